//! Turns flags, environment and the optional TOML file into validated configuration values.
//! Errors name the setting and say what a valid value looks like.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use tessera_agent::AgentConfig;
use tessera_master::MasterConfig;

use crate::cli::{AgentArgs, MasterArgs, UpArgs};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:5050";
pub const DEFAULT_AGENTS: usize = 2;
pub const MAX_UP_AGENTS: usize = 64;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    #[serde(default)]
    pub master: MasterFile,
    #[serde(default)]
    pub agent: AgentFile,
    #[serde(default)]
    pub up: UpFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterFile {
    pub listen: Option<String>,
    pub domain: Option<String>,
    pub work_dir: Option<PathBuf>,
    pub agent_heartbeat_interval: Option<String>,
    pub agent_timeout: Option<String>,
    pub offer_timeout: Option<String>,
    pub allocation_interval: Option<String>,
    pub scheduler_heartbeat_interval: Option<String>,
    pub standby_of: Option<String>,
    pub no_batch: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    pub master: Option<String>,
    pub work_dir: Option<PathBuf>,
    pub resources: Option<String>,
    pub attributes: Option<String>,
    pub hostname: Option<String>,
    pub isolation: Option<String>,
    pub namespaces: Option<String>,
    pub switch_user: Option<bool>,
    pub domain: Option<String>,
    pub http_listen: Option<String>,
    pub docker_socket: Option<String>,
    pub gc_delay: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpFile {
    pub agents: Option<usize>,
}

impl FileSettings {
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("config: cannot read {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow!("config {}: {e}", path.display()))
    }
}

/// `500ms`, `5s`, `10m`, `1h`, or a bare number of seconds.
pub fn parse_duration(setting: &str, text: &str) -> Result<Duration> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow!("{setting}: '{text}' is not a duration like 500ms, 5s, 10m or 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("{setting}: unknown unit '{unit}' in '{text}' (use ms, s, m or h)"),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        bail!("{setting}: '{text}' is out of range");
    }
    Ok(Duration::from_secs_f64(secs))
}

fn pick<T: Clone>(flag: &Option<T>, file: &Option<T>) -> Option<T> {
    flag.clone().or_else(|| file.clone())
}

pub fn data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("tessera")
}

/// The master to talk to: the flag, then `TESSERA_MASTER` (clap reads it), then the default.
pub fn master_address(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string())
}

/// Whether `tessera master` hosts the batch scheduler.
pub fn master_hosts_batch(args: &MasterArgs, file: &MasterFile) -> bool {
    !(args.no_batch || file.no_batch.unwrap_or(false))
}

/// Adds where a setting can come from to an error about it (one that starts `NAME:` or
/// `NAME[i]:`, NAME being the flag's id in subcommand `cmd`): its flag, the `TESSERA_*`
/// variable clap folds into the flag's value, and its key in the config file. Without this, a
/// bad environment variable is reported under a name the user never typed.
fn with_sources(cmd: &str, e: anyhow::Error) -> anyhow::Error {
    use clap::CommandFactory;
    let msg = format!("{e:#}");
    let name = msg.split([':', '[']).next().unwrap_or_default();
    let command = crate::cli::Cli::command();
    let Some(arg) = command
        .find_subcommand(cmd)
        .and_then(|c| c.get_arguments().find(|a| a.get_id() == name))
    else {
        return e;
    };
    let mut from: Vec<String> = Vec::new();
    if let Some(long) = arg.get_long() {
        from.push(format!("--{long}"));
    }
    if let Some(var) = arg.get_env() {
        from.push(var.to_string_lossy().into_owned());
    }
    let section = match (cmd, name) {
        ("agent", _) => "agent",
        (_, "agents") => "up",
        _ => "master",
    };
    from.push(format!("`[{section}] {name}` in the config file"));
    let last = from.pop().unwrap_or_default();
    anyhow!("{msg} (set by {} or {last})", from.join(", "))
}

pub fn master_config(args: &MasterArgs, file: &MasterFile) -> Result<MasterConfig> {
    master_config_from(args, file).map_err(|e| with_sources("master", e))
}

fn master_config_from(args: &MasterArgs, file: &MasterFile) -> Result<MasterConfig> {
    let listen: SocketAddr = match pick(&args.listen.map(|a| a.to_string()), &file.listen) {
        Some(s) => s.parse().map_err(|_| {
            anyhow!("listen: '{s}' is not HOST:PORT with a numeric IP, e.g. 127.0.0.1:5050")
        })?,
        None => DEFAULT_LISTEN.parse()?,
    };
    let work_dir =
        pick(&args.work_dir, &file.work_dir).unwrap_or_else(|| data_dir().join("master"));
    let mut cfg = MasterConfig::new(listen, work_dir);
    if let Some(d) = pick(&args.domain, &file.domain) {
        let (region, zone) = parse_domain(&d)?;
        cfg.domain = Some(
            tessera_master::FaultDomain::new("domain", &region, &zone)
                .map_err(|e| anyhow!("{e}"))?,
        );
    }
    if let Some(d) = pick(
        &args.agent_heartbeat_interval,
        &file.agent_heartbeat_interval,
    ) {
        cfg.agent_heartbeat_interval = parse_duration("agent_heartbeat_interval", &d)?;
    }
    if let Some(d) = pick(&args.agent_timeout, &file.agent_timeout) {
        cfg.agent_timeout = parse_duration("agent_timeout", &d)?;
    }
    if let Some(d) = pick(&args.offer_timeout, &file.offer_timeout) {
        cfg.offer_timeout = Some(parse_duration("offer_timeout", &d)?);
    }
    if let Some(d) = pick(&args.allocation_interval, &file.allocation_interval) {
        cfg.allocator.interval = parse_duration("allocation_interval", &d)?;
    }
    if let Some(d) = pick(
        &args.scheduler_heartbeat_interval,
        &file.scheduler_heartbeat_interval,
    ) {
        cfg.scheduler_heartbeat_interval = parse_duration("scheduler_heartbeat_interval", &d)?;
    }
    cfg.standby_of = pick(&args.standby_of, &file.standby_of);
    cfg.validate()?;
    Ok(cfg)
}

/// `rack:r1;zone:a` → pairs; errors name the entry.
pub fn parse_attributes(text: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, part) in text
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        let (k, v) = part
            .split_once(':')
            .ok_or_else(|| anyhow!("attributes[{i}]: '{part}' is not NAME:VALUE"))?;
        if k.trim().is_empty() {
            bail!("attributes[{i}]: the name is empty");
        }
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(out)
}

pub fn agent_config(args: &AgentArgs, file: &AgentFile) -> Result<AgentConfig> {
    agent_config_from(args, file).map_err(|e| with_sources("agent", e))
}

fn agent_config_from(args: &AgentArgs, file: &AgentFile) -> Result<AgentConfig> {
    let master = master_address(pick(&args.master, &file.master).as_deref());
    validate_host_port("master", &master)?;
    let work_dir = pick(&args.work_dir, &file.work_dir).unwrap_or_else(|| data_dir().join("agent"));
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("work_dir: cannot create {}", work_dir.display()))?;
    let detected = tessera_agent::detect_resources(&work_dir)?;
    let flag = pick(&args.resources, &file.resources);
    let resources = tessera_agent::resources_with_overrides(detected, flag.as_deref())?;
    let mut cfg = AgentConfig::new(master, work_dir, resources);
    if let Some(a) = pick(&args.attributes, &file.attributes) {
        cfg.attributes = parse_attributes(&a)?;
    }
    if let Some(h) = pick(&args.hostname, &file.hostname) {
        cfg.hostname = h;
    }
    if let Some(i) = pick(&args.isolation, &file.isolation) {
        cfg.isolation = parse_isolation(&i)?;
    }
    if let Some(n) = pick(&args.namespaces, &file.namespaces) {
        cfg.namespaces = n.parse().map_err(|e: String| anyhow!(e))?;
    }
    if let Some(s) = pick(&args.switch_user, &file.switch_user) {
        cfg.switch_user = s;
    }
    if let Some(d) = pick(&args.domain, &file.domain) {
        cfg.domain = Some(parse_domain(&d)?);
    }
    let listen =
        pick(&args.http_listen, &file.http_listen).unwrap_or_else(|| "0.0.0.0:5051".into());
    cfg.http_listen = Some(
        listen
            .trim()
            .parse()
            .map_err(|_| anyhow!("http_listen: '{listen}' is not IP:PORT"))?,
    );
    if let Some(d) = pick(&args.docker_socket, &file.docker_socket) {
        cfg.docker_socket = d;
    }
    if let Some(d) = pick(&args.gc_delay, &file.gc_delay) {
        cfg.gc_delay = parse_duration("gc_delay", &d)?;
    }
    Ok(cfg)
}

/// `REGION/ZONE`, each part 1-255 bytes without control characters or `/`.
fn parse_domain(s: &str) -> Result<(String, String)> {
    let Some((region, zone)) = s.trim().split_once('/') else {
        bail!("domain: '{s}' is not REGION/ZONE, e.g. eu-west/zone-a");
    };
    for (name, v) in [("region", region), ("zone", zone)] {
        if v.is_empty() || v.len() > 255 || v.contains('/') || v.chars().any(char::is_control) {
            bail!(
                "domain: the {name} in '{s}' must be 1-255 bytes without '/' or control characters"
            );
        }
    }
    Ok((region.to_string(), zone.to_string()))
}

fn parse_isolation(s: &str) -> Result<tessera_agent::Isolation> {
    match s.trim() {
        "cgroups" => Ok(tessera_agent::Isolation::Cgroups),
        "none" => Ok(tessera_agent::Isolation::None),
        other => bail!("isolation: '{other}' is not one of cgroups, none"),
    }
}

fn validate_host_port(setting: &str, s: &str) -> Result<()> {
    let ok = s
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok {
        bail!("{setting}: '{s}' is not HOST:PORT, e.g. 127.0.0.1:5050");
    }
    Ok(())
}

/// Everything `tessera up` needs.
pub struct UpConfig {
    pub master: MasterConfig,
    /// Host the batch scheduler.
    pub batch: bool,
    pub agents: usize,
    pub root: PathBuf,
    pub log_file: PathBuf,
}

pub fn up_config(args: &UpArgs, file: &FileSettings) -> Result<UpConfig> {
    up_config_from(args, file).map_err(|e| with_sources("up", e))
}

fn up_config_from(args: &UpArgs, file: &FileSettings) -> Result<UpConfig> {
    let root = pick(&args.master.work_dir, &file.master.work_dir).unwrap_or_else(data_dir);
    let mut margs = args.master.clone();
    margs.work_dir = Some(root.join("master"));
    let master = master_config_from(&margs, &file.master)?;
    let agents = pick(&args.agents, &file.up.agents).unwrap_or(DEFAULT_AGENTS);
    if agents == 0 || agents > MAX_UP_AGENTS {
        bail!("agents: {agents} is out of range; use 1 to {MAX_UP_AGENTS}");
    }
    std::fs::create_dir_all(root.join("logs"))
        .with_context(|| format!("work_dir: cannot create {}", root.display()))?;
    Ok(UpConfig {
        master,
        batch: !(args.master.no_batch || file.master.no_batch.unwrap_or(false)),
        agents,
        log_file: root.join("logs").join("tessera.log"),
        root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_region_slash_zone() {
        assert_eq!(
            parse_domain("eu-west/zone-a").unwrap(),
            ("eu-west".to_string(), "zone-a".to_string())
        );
        for bad in ["eu-west", "/zone", "eu/", "a/b/c"] {
            let e = parse_domain(bad).unwrap_err().to_string();
            assert!(e.starts_with("domain:"), "{bad}: {e}");
        }
    }

    #[test]
    fn isolation_is_cgroups_or_none() {
        assert_eq!(
            parse_isolation("none").unwrap(),
            tessera_agent::Isolation::None
        );
        assert_eq!(
            parse_isolation("cgroups").unwrap(),
            tessera_agent::Isolation::Cgroups
        );
        let e = parse_isolation("docker").unwrap_err().to_string();
        assert!(e.starts_with("isolation:"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("x", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("x", "2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("x", "3").unwrap(), Duration::from_secs(3));
        let e = parse_duration("agent_timeout", "soon")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("agent_timeout:"), "{e}");
        assert!(parse_duration("x", "5d").is_err());
        assert!(parse_duration("x", "-5s").is_err());
    }

    #[test]
    fn master_settings_validated_with_names() {
        let args = MasterArgs {
            agent_timeout: Some("1s".into()),
            agent_heartbeat_interval: Some("5s".into()),
            ..Default::default()
        };
        let e = master_config(&args, &MasterFile::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("agent_timeout"), "{e}");
        let file = MasterFile {
            listen: Some("nowhere".into()),
            ..Default::default()
        };
        let e = master_config(&MasterArgs::default(), &file)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("listen:"), "{e}");
    }

    #[test]
    fn flags_override_file() {
        let file = MasterFile {
            agent_timeout: Some("100s".into()),
            offer_timeout: Some("9s".into()),
            ..Default::default()
        };
        let args = MasterArgs {
            agent_timeout: Some("50s".into()),
            work_dir: Some(std::env::temp_dir()),
            ..Default::default()
        };
        let c = master_config(&args, &file).unwrap();
        assert_eq!(c.agent_timeout, Duration::from_secs(50));
        assert_eq!(c.offer_timeout, Some(Duration::from_secs(9)));
    }

    #[test]
    fn unknown_file_keys_are_named() {
        let e = toml::from_str::<FileSettings>("[master]\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("listen_addr"), "{e}");
    }

    #[test]
    fn errors_name_the_flag_the_variable_and_the_file_key() {
        let args = MasterArgs {
            agent_timeout: Some("soon".into()),
            ..Default::default()
        };
        let e = master_config(&args, &MasterFile::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("agent_timeout: 'soon'"), "{e}");
        for name in [
            "--agent-timeout",
            "TESSERA_AGENT_TIMEOUT",
            "`[master] agent_timeout`",
        ] {
            assert!(e.contains(name), "{e} lacks {name}");
        }

        let up = UpArgs {
            agents: Some(0),
            master: MasterArgs {
                work_dir: Some(std::env::temp_dir().join("tessera-settings-test")),
                ..Default::default()
            },
        };
        let e = up_config(&up, &FileSettings::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("agents:"), "{e}");
        assert!(
            e.contains("TESSERA_AGENTS") && e.contains("`[up] agents`"),
            "{e}"
        );

        let dir = std::env::temp_dir().join(format!("tessera-settings-{}", std::process::id()));
        let agent = AgentArgs {
            work_dir: Some(dir.clone()),
            ..Default::default()
        };
        let file = AgentFile {
            attributes: Some("rack".into()),
            ..Default::default()
        };
        let e = agent_config(&agent, &file).unwrap_err().to_string();
        assert!(e.starts_with("attributes[0]:"), "{e}");
        assert!(
            e.contains("TESSERA_ATTRIBUTES") && e.contains("`[agent] attributes`"),
            "{e}"
        );
        // Errors about something that is not a setting of its own are left as they are.
        let e = with_sources("master", anyhow!("cpus: no")).to_string();
        assert_eq!(e, "cpus: no");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn master_address_falls_back_to_localhost_5050() {
        assert_eq!(master_address(None), "127.0.0.1:5050");
        assert_eq!(master_address(Some("m:1")), "m:1");
        let dir = std::env::temp_dir().join(format!("tessera-agent-{}", std::process::id()));
        let args = AgentArgs {
            work_dir: Some(dir.clone()),
            ..Default::default()
        };
        let c = agent_config(&args, &AgentFile::default()).unwrap();
        assert_eq!(c.master, "127.0.0.1:5050");
        let file = AgentFile {
            master: Some("filehost:6060".into()),
            ..Default::default()
        };
        assert_eq!(agent_config(&args, &file).unwrap().master, "filehost:6060");
        let flag = AgentArgs {
            master: Some("flaghost:7070".into()),
            ..args
        };
        assert_eq!(agent_config(&flag, &file).unwrap().master, "flaghost:7070");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_valid_config_file_takes_effect() {
        let dir = std::env::temp_dir().join(format!("tessera-toml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tessera.toml");
        std::fs::write(
            &path,
            format!(
                "[master]\nlisten = \"127.0.0.1:6060\"\nwork_dir = \"{}\"\n\
                 agent_timeout = \"90s\"\noffer_timeout = \"7s\"\nno_batch = true\n\
                 [agent]\nmaster = \"m:1\"\nwork_dir = \"{}\"\nattributes = \"rack:r9\"\n\
                 gc_delay = \"1h\"\n[up]\nagents = 3\n",
                dir.display(),
                dir.join("agent").display()
            ),
        )
        .unwrap();
        let file = FileSettings::load(Some(&path)).unwrap();
        let m = master_config(&MasterArgs::default(), &file.master).unwrap();
        assert_eq!(m.listen, "127.0.0.1:6060".parse().unwrap());
        assert_eq!(m.work_dir, dir);
        assert_eq!(m.agent_timeout, Duration::from_secs(90));
        assert_eq!(m.offer_timeout, Some(Duration::from_secs(7)));
        assert!(!master_hosts_batch(&MasterArgs::default(), &file.master));
        let a = agent_config(&AgentArgs::default(), &file.agent).unwrap();
        assert_eq!(a.master, "m:1");
        assert_eq!(a.work_dir, dir.join("agent"));
        assert_eq!(a.attributes, vec![("rack".into(), "r9".into())]);
        assert_eq!(a.gc_delay, Duration::from_secs(3600));
        let up = up_config(&UpArgs::default(), &file).unwrap();
        assert_eq!(up.agents, 3);
        assert!(!up.batch);
        assert_eq!(up.root, dir);
        assert_eq!(up.master.work_dir, dir.join("master"));
        assert_eq!(up.master.agent_timeout, Duration::from_secs(90));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn attributes() {
        assert_eq!(
            parse_attributes("rack:r1; zone:a").unwrap(),
            vec![("rack".into(), "r1".into()), ("zone".into(), "a".into())]
        );
        assert!(parse_attributes("rack").is_err());
    }
}
