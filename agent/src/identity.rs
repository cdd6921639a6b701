//! The agent's stable identity: a UUID generated once and kept in the state
//! directory, so renaming the host does not make it a new agent.

use std::io;
use std::path::Path;

use steward_core::ids::{is_uuid, new_uuid_v4};

const ID_FILE: &str = "agent-id";

/// Returns the persisted agent id, creating it (and the directory) on first use.
pub fn load_or_create_agent_id(state_dir: &Path) -> io::Result<String> {
    let path = state_dir.join(ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if is_uuid(text.trim()) => return Ok(text.trim().to_string()),
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} does not hold a UUID", path.display()),
            ));
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    std::fs::create_dir_all(state_dir)?;
    let id = new_uuid_v4();
    // Write-then-rename so a crash never leaves a half-written id behind.
    let temporary = state_dir.join(format!("{ID_FILE}.tmp"));
    std::fs::write(&temporary, format!("{id}\n"))?;
    std::fs::rename(&temporary, &path)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_created_once_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = load_or_create_agent_id(&state).unwrap();
        assert!(is_uuid(&first), "{first}");
        assert_eq!(load_or_create_agent_id(&state).unwrap(), first);
    }

    #[test]
    fn corrupt_id_file_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ID_FILE), "garbage").unwrap();
        assert!(load_or_create_agent_id(dir.path()).is_err());
    }
}
