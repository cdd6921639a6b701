//! Where `stewardctl` finds the collector and its token.
//!
//! Each setting comes from the first of: a flag (`--url`, `--token-file`,
//! `--ca-file`), the environment (`STEWARD_URL`, `STEWARD_TOKEN`,
//! `STEWARD_CA_FILE`), and `ctl.toml` (`--config`, else
//! `$XDG_CONFIG_HOME/steward/ctl.toml`, else `~/.config/steward/ctl.toml`).
//! The token is never printed; a token file (or a `ctl.toml` holding a
//! token) that other users can read is refused.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use steward_core::config_file::ConfigSource;

use crate::error::CtlError;

/// `ctl.toml` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CtlFile {
    /// `https://collector.example:7080`
    url: Option<String>,
    /// The API token itself (the file must then be private).
    token: Option<String>,
    /// A file holding the token; relative to `ctl.toml`'s directory.
    token_file: Option<PathBuf>,
    /// PEM CA certificate(s) for an `https://` collector with a private CA.
    ca_file: Option<PathBuf>,
}

/// What flags gave (`None`: not given).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub url: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub config: Option<PathBuf>,
}

/// The environment variables that matter, read once (tests pass their own).
#[derive(Debug, Default, Clone)]
pub struct Environment {
    pub steward_url: Option<String>,
    pub steward_token: Option<String>,
    pub steward_ca_file: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    pub home: Option<PathBuf>,
}

impl Environment {
    pub fn from_process() -> Self {
        let text = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let path = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        Self {
            steward_url: text("STEWARD_URL"),
            steward_token: text("STEWARD_TOKEN"),
            steward_ca_file: path("STEWARD_CA_FILE").map(PathBuf::from),
            xdg_config_home: path("XDG_CONFIG_HOME").map(PathBuf::from),
            home: path("HOME").map(PathBuf::from),
        }
    }

    /// `$XDG_CONFIG_HOME/steward/ctl.toml` (an absolute one only, as the
    /// XDG spec says), else `$HOME/.config/steward/ctl.toml`.
    pub fn default_config_path(&self) -> Option<PathBuf> {
        let base = match &self.xdg_config_home {
            Some(dir) if dir.is_absolute() => dir.clone(),
            _ => self.home.as_ref()?.join(".config"),
        };
        Some(base.join("steward").join("ctl.toml"))
    }
}

/// An API token; `Debug` never shows it.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    fn new(text: &str, from: &str) -> Result<Self, CtlError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(CtlError::Usage(format!(
                "the API token from {from} is empty"
            )));
        }
        if text.chars().any(|c| c.is_control() || c == ' ') {
            return Err(CtlError::Usage(format!(
                "the API token from {from} holds spaces or control characters"
            )));
        }
        Ok(Self(text.to_string()))
    }

    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Validated settings: where to connect and with what.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: reqwest::Url,
    pub token: Token,
    pub ca_file: Option<PathBuf>,
}

/// Settings from flags, then the environment, then `ctl.toml`.
pub fn resolve(flags: &Flags, env: &Environment) -> Result<Settings, CtlError> {
    let (source, file) = match &flags.config {
        Some(path) => {
            let source = ConfigSource::read(path)?;
            let file = source.parse::<CtlFile>()?;
            (Some(source), file)
        }
        None => match env.default_config_path().filter(|path| path.exists()) {
            Some(path) => {
                let source = ConfigSource::read(&path)?;
                let file = source.parse::<CtlFile>()?;
                (Some(source), file)
            }
            None => (None, CtlFile::default()),
        },
    };
    let shown_config = source
        .as_ref()
        .map(|source| source.path.display().to_string())
        .unwrap_or_else(|| "ctl.toml".into());

    let url = if let Some(url) = &flags.url {
        parse_url(url).map_err(|why| CtlError::Usage(format!("--url: {why}")))?
    } else if let Some(url) = &env.steward_url {
        parse_url(url).map_err(|why| CtlError::Usage(format!("STEWARD_URL: {why}")))?
    } else if let (Some(url), Some(source)) = (&file.url, &source) {
        parse_url(url).map_err(|why| source.error("url", why))?
    } else {
        return Err(CtlError::Usage(format!(
            "no collector URL: pass --url, set STEWARD_URL, or put `url` in {}",
            env.default_config_path()
                .map_or(shown_config.clone(), |path| path.display().to_string())
        )));
    };

    let token = if let Some(path) = &flags.token_file {
        read_token_file(path, "--token-file")?
    } else if let Some(token) = &env.steward_token {
        Token::new(token, "STEWARD_TOKEN")?
    } else if let Some(source) = &source {
        match (&file.token, &file.token_file) {
            (Some(_), Some(_)) => {
                return Err(source
                    .error(
                        "token_file",
                        "give either `token` or `token_file`, not both",
                    )
                    .into());
            }
            (Some(token), None) => {
                refuse_if_others_can_read(&source.path, "it holds `token`")?;
                Token::new(token, &shown_config)?
            }
            (None, Some(path)) => read_token_file(&source.resolve(path), "token_file")?,
            (None, None) => return Err(missing_token(&shown_config)),
        }
    } else {
        return Err(missing_token(&shown_config));
    };

    let ca_file = flags
        .ca_file
        .clone()
        .or_else(|| env.steward_ca_file.clone())
        .or_else(|| {
            let source = source.as_ref()?;
            file.ca_file.as_deref().map(|path| source.resolve(path))
        });
    Ok(Settings {
        url,
        token,
        ca_file,
    })
}

fn missing_token(config: &str) -> CtlError {
    CtlError::Usage(format!(
        "no API token: pass --token-file, set STEWARD_TOKEN, or put `token_file` in {config}"
    ))
}

/// An `http(s)://host[:port][/prefix]` URL, without query or fragment.
fn parse_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text.trim())
        .map_err(|error| format!("invalid URL {text:?}: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?} is not an http:// or https:// URL"));
    }
    if url.host().is_none() {
        return Err(format!("{text:?} has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "{text:?} must not carry credentials, a query or a fragment"
        ));
    }
    Ok(url)
}

fn read_token_file(path: &Path, from: &str) -> Result<Token, CtlError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        CtlError::Usage(format!("{from}: cannot read {}: {error}", path.display()))
    })?;
    refuse_if_others_can_read(path, "it holds the API token")?;
    Token::new(&text, &path.display().to_string())
}

/// A token readable by every user of the machine is as good as published.
#[cfg(unix)]
fn refuse_if_others_can_read(path: &Path, why: &str) -> Result<(), CtlError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map(|metadata| metadata.permissions().mode())
        .unwrap_or(0);
    if mode & 0o004 != 0 {
        return Err(CtlError::Usage(format!(
            "{} is readable by other users (mode {:o}) and {why}; run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_if_others_can_read(_path: &Path, _why: &str) -> Result<(), CtlError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_private(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }

    fn home_with(text: &str) -> (tempfile::TempDir, Environment) {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join(".config/steward");
        std::fs::create_dir_all(&dir).unwrap();
        write_private(&dir.join("ctl.toml"), text);
        let env = Environment {
            home: Some(home.path().to_path_buf()),
            ..Environment::default()
        };
        (home, env)
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file() {
        let (home, mut env) = home_with("url = \"http://file.example:1\"\ntoken = \"file\"\n");
        let settings = resolve(&Flags::default(), &env).unwrap();
        assert_eq!(settings.url.as_str(), "http://file.example:1/");
        assert_eq!(settings.token.secret(), "file");

        env.steward_url = Some("http://env.example:2".into());
        env.steward_token = Some("env".into());
        let settings = resolve(&Flags::default(), &env).unwrap();
        assert_eq!(settings.url.host_str(), Some("env.example"));
        assert_eq!(settings.token.secret(), "env");

        let token_file = home.path().join("token");
        write_private(&token_file, "flag\n");
        let flags = Flags {
            url: Some("http://flag.example:3".into()),
            token_file: Some(token_file),
            ..Flags::default()
        };
        let settings = resolve(&flags, &env).unwrap();
        assert_eq!(settings.url.host_str(), Some("flag.example"));
        assert_eq!(settings.token.secret(), "flag");
        assert!(!format!("{settings:?}").contains("flag\""), "{settings:?}");
    }

    #[test]
    fn xdg_config_home_wins_over_home() {
        let (home, mut env) = home_with("url = \"http://home.example\"\ntoken = \"t\"\n");
        let xdg = home.path().join("xdg");
        std::fs::create_dir_all(xdg.join("steward")).unwrap();
        write_private(
            &xdg.join("steward/ctl.toml"),
            "url = \"http://xdg.example\"\ntoken = \"t\"\n",
        );
        env.xdg_config_home = Some(xdg);
        let settings = resolve(&Flags::default(), &env).unwrap();
        assert_eq!(settings.url.host_str(), Some("xdg.example"));
    }

    #[test]
    fn bad_files_name_their_line_and_key() {
        let (_home, env) = home_with("url = \"http://x\"\ntokn = \"t\"\n");
        let error = resolve(&Flags::default(), &env).unwrap_err();
        assert!(matches!(error, CtlError::Config(_)), "{error}");
        assert!(
            error.to_string().contains("ctl.toml:2: key `tokn`"),
            "{error}"
        );

        let (_home, env) = home_with("url = \"ftp://x\"\ntoken = \"t\"\n");
        let error = resolve(&Flags::default(), &env).unwrap_err();
        assert!(
            error.to_string().contains("ctl.toml:1: key `url`"),
            "{error}"
        );
    }

    #[test]
    fn missing_settings_and_public_tokens_are_usage_errors() {
        let env = Environment::default();
        let error = resolve(&Flags::default(), &env).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("no collector URL"), "{error}");

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let (home, env) = home_with("url = \"http://x\"\ntoken = \"secret\"\n");
            let file = home.path().join(".config/steward/ctl.toml");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            let error = resolve(&Flags::default(), &env).unwrap_err();
            assert!(error.to_string().contains("chmod 600"), "{error}");
            assert!(!error.to_string().contains("secret"), "{error}");
        }
    }
}
