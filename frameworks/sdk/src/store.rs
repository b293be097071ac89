//! Where the framework id is kept between runs, so a restarted framework fails over to its
//! old identity (and keeps its tasks) instead of registering anew.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tessera_types::FrameworkId;

use crate::error::{Error, Result};

/// Loads and saves the framework id.
pub trait FrameworkIdStore: Send + Sync {
    fn load(&self) -> Result<Option<FrameworkId>>;
    fn save(&self, id: &FrameworkId) -> Result<()>;
}

/// Keeps the id in memory only (tests, or frameworks that never fail over).
#[derive(Debug, Default)]
pub struct MemoryIdStore(Mutex<Option<FrameworkId>>);

impl MemoryIdStore {
    pub fn new(initial: Option<FrameworkId>) -> Self {
        MemoryIdStore(Mutex::new(initial))
    }
}

impl FrameworkIdStore for MemoryIdStore {
    fn load(&self) -> Result<Option<FrameworkId>> {
        Ok(self.0.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
    fn save(&self, id: &FrameworkId) -> Result<()> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
        Ok(())
    }
}

/// Keeps the id in a text file, written atomically (temporary file + rename).
#[derive(Debug, Clone)]
pub struct FileIdStore {
    path: PathBuf,
}

impl FileIdStore {
    pub fn new(path: impl AsRef<Path>) -> Self {
        FileIdStore {
            path: path.as_ref().to_path_buf(),
        }
    }

    fn err(&self, source: std::io::Error) -> Error {
        Error::Store {
            path: self.path.display().to_string(),
            source,
        }
    }
}

impl FrameworkIdStore for FileIdStore {
    fn load(&self) -> Result<Option<FrameworkId>> {
        match std::fs::read_to_string(&self.path) {
            Ok(s) if s.trim().is_empty() => Ok(None),
            Ok(s) => FrameworkId::new(s.trim())
                .map(Some)
                .map_err(|e| self.err(std::io::Error::new(std::io::ErrorKind::InvalidData, e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    fn save(&self, id: &FrameworkId) -> Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| self.err(e))?;
        }
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, format!("{id}\n")).map_err(|e| self.err(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_store_round_trips_and_starts_empty() {
        let dir = std::env::temp_dir().join(format!("tessera-fw-store-{}", uuid::Uuid::new_v4()));
        let s = FileIdStore::new(dir.join("sub/framework_id"));
        assert_eq!(s.load().unwrap(), None);
        let id = FrameworkId::new("fw-1").unwrap();
        s.save(&id).unwrap();
        assert_eq!(s.load().unwrap(), Some(id.clone()));
        assert_eq!(
            FileIdStore::new(dir.join("sub/framework_id"))
                .load()
                .unwrap(),
            Some(id)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn memory_store_round_trips() {
        let s = MemoryIdStore::default();
        assert_eq!(s.load().unwrap(), None);
        s.save(&FrameworkId::new("x").unwrap()).unwrap();
        assert_eq!(s.load().unwrap().unwrap().as_str(), "x");
    }
}
