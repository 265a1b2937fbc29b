//! The default camera, microphone and speaker, kept in the `[devices]` table of the appliance's TOML
//! configuration (`camera = "/dev/video0"`, `microphone = "hw:CARD=Device,DEV=0"`, `speaker = ...`).
//! Saving rewrites only that table, atomically (a temporary file renamed over the old one), and keeps
//! every other table of the file as it was.

use std::path::{Path, PathBuf};

use super::{DeviceError, DeviceKind};

const TABLE: &str = "devices";

/// The chosen default devices, and the file they persist to (none: kept in memory only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DevicePreferences {
    path: Option<PathBuf>,
    camera: Option<String>,
    microphone: Option<String>,
    speaker: Option<String>,
}

fn err(path: &Path, reason: impl Into<String>) -> DeviceError {
    DeviceError::Preferences { path: path.display().to_string(), reason: reason.into() }
}

impl DevicePreferences {
    /// Preferences kept in memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Reads the `[devices]` table of `path`; a missing file gives empty preferences that will be saved
    /// there. A malformed file or entry is an error naming the file and the key.
    pub fn load(path: &Path) -> Result<Self, DeviceError> {
        let mut prefs = DevicePreferences { path: Some(path.to_owned()), ..Default::default() };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(prefs),
            Err(e) => return Err(err(path, format!("cannot read: {e}"))),
        };
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| err(path, e.message().to_owned()))?;
        let Some(value) = doc.get(TABLE) else {
            return Ok(prefs);
        };
        let table = value.as_table().ok_or_else(|| err(path, format!("`{TABLE}` must be a table")))?;
        for (key, value) in table {
            let kind = match key.as_str() {
                "camera" => DeviceKind::Camera,
                "microphone" => DeviceKind::Microphone,
                "speaker" => DeviceKind::Speaker,
                // Other device settings belong to other readers of the table.
                _ => continue,
            };
            let id = value.as_str().ok_or_else(|| err(path, format!("`{TABLE}.{key}` must be a string")))?;
            if id.trim().is_empty() {
                return Err(err(path, format!("`{TABLE}.{key}` is empty")));
            }
            *prefs.slot(kind) = Some(id.to_owned());
        }
        Ok(prefs)
    }

    fn slot(&mut self, kind: DeviceKind) -> &mut Option<String> {
        match kind {
            DeviceKind::Camera => &mut self.camera,
            DeviceKind::Microphone => &mut self.microphone,
            DeviceKind::Speaker => &mut self.speaker,
        }
    }

    /// The default device id of `kind`, if one was chosen.
    pub fn get(&self, kind: DeviceKind) -> Option<&str> {
        match kind {
            DeviceKind::Camera => self.camera.as_deref(),
            DeviceKind::Microphone => self.microphone.as_deref(),
            DeviceKind::Speaker => self.speaker.as_deref(),
        }
    }

    /// The file the preferences persist to.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Sets the default of `kind` and saves the file (if there is one). On a save failure the
    /// preference is not changed.
    pub fn set(&mut self, kind: DeviceKind, id: &str) -> Result<(), DeviceError> {
        let previous = self.slot(kind).replace(id.to_owned());
        if let Err(e) = self.save() {
            *self.slot(kind) = previous;
            return Err(e);
        }
        Ok(())
    }

    fn save(&self) -> Result<(), DeviceError> {
        let Some(path) = self.path.as_deref() else {
            return Ok(());
        };
        let mut doc: toml::Table = match std::fs::read_to_string(path) {
            Ok(text) => text.parse().map_err(|e: toml::de::Error| err(path, e.message().to_owned()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
            Err(e) => return Err(err(path, format!("cannot read: {e}"))),
        };
        let table = doc.entry(TABLE).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let table = table.as_table_mut().ok_or_else(|| err(path, format!("`{TABLE}` must be a table")))?;
        for kind in [DeviceKind::Camera, DeviceKind::Microphone, DeviceKind::Speaker] {
            if let Some(id) = self.get(kind) {
                table.insert(kind.as_str().to_owned(), toml::Value::String(id.to_owned()));
            }
        }
        let text = toml::to_string(&doc).map_err(|e| err(path, format!("cannot serialise: {e}")))?;
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).map_err(|e| err(&tmp, format!("cannot write: {e}")))?;
        std::fs::rename(&tmp, path).map_err(|e| err(path, format!("cannot replace: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cbx-prefs-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("callbox.toml")
    }

    #[test]
    fn defaults_persist_and_other_tables_survive() {
        let path = temp("persist");
        std::fs::write(&path, "[janus]\nurl = \"ws://127.0.0.1:8188\"\n\n[devices]\ncamera = \"/dev/video0\"\n")
            .unwrap();
        let mut prefs = DevicePreferences::load(&path).unwrap();
        assert_eq!(prefs.get(DeviceKind::Camera), Some("/dev/video0"));
        assert_eq!(prefs.get(DeviceKind::Speaker), None);
        prefs.set(DeviceKind::Speaker, "hw:CARD=Headphones,DEV=0").unwrap();
        let again = DevicePreferences::load(&path).unwrap();
        assert_eq!(again.get(DeviceKind::Speaker), Some("hw:CARD=Headphones,DEV=0"));
        assert_eq!(again.get(DeviceKind::Camera), Some("/dev/video0"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("ws://127.0.0.1:8188"), "{text}");
    }

    #[test]
    fn a_missing_file_is_empty_and_created_on_set() {
        let path = temp("missing");
        let _ = std::fs::remove_file(&path);
        let mut prefs = DevicePreferences::load(&path).unwrap();
        assert_eq!(prefs.get(DeviceKind::Microphone), None);
        prefs.set(DeviceKind::Microphone, "default").unwrap();
        assert_eq!(DevicePreferences::load(&path).unwrap().get(DeviceKind::Microphone), Some("default"));
    }

    #[test]
    fn malformed_entries_name_the_key_and_the_file() {
        let path = temp("malformed");
        std::fs::write(&path, "[devices]\ncamera = 3\n").unwrap();
        let e = DevicePreferences::load(&path).unwrap_err().to_string();
        assert!(e.contains("devices.camera") && e.contains("callbox.toml"), "{e}");
        std::fs::write(&path, "devices = \"x\"\n").unwrap();
        let e = DevicePreferences::load(&path).unwrap_err().to_string();
        assert!(e.contains("must be a table"), "{e}");
        std::fs::write(&path, "[devices\n").unwrap();
        assert!(DevicePreferences::load(&path).is_err());
    }

    #[test]
    fn a_failed_save_leaves_the_preference_unchanged() {
        let path = temp("readonly").with_file_name("no-such-dir").join("callbox.toml");
        let mut prefs = DevicePreferences::load(&path).unwrap();
        assert!(prefs.set(DeviceKind::Camera, "/dev/video1").is_err());
        assert_eq!(prefs.get(DeviceKind::Camera), None);
    }
}
