//! Where a process's resident memory is, read from `/proc/PID/smaps`: each mapping's resident, private-dirty,
//! private-clean and shared-clean kB, grouped by what is mapped (a file by its name, `[anon]`, `[heap]`,
//! `[stack]`), so that a benchmark can print the few groups that make up its peak RSS (docs/benchmarks.md,
//! "Memory of one call").

use std::collections::HashMap;
use std::path::PathBuf;

use crate::HarnessError;

/// The kB of one group of mappings.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MappingGroup {
    /// A file's name (without its folder), or `[anon]`, `[heap]`, `[stack]`, `[vdso]`...
    pub name: String,
    pub rss_kb: u64,
    /// Written by the process: heaps, buffers, a library's relocated data. What a second process would not share.
    pub private_dirty_kb: u64,
    /// Read from a file by this process alone (the firmware's own code, on a device where nothing else maps it).
    pub private_clean_kb: u64,
    /// Read from a file and mapped by other processes too (shared libraries): dropped first under pressure.
    pub shared_clean_kb: u64,
}

/// A process's mappings grouped, the largest resident first.
#[derive(Debug, Default, Clone)]
pub struct Smaps {
    pub groups: Vec<MappingGroup>,
}

impl Smaps {
    /// Reads and groups `/proc/PID/smaps`.
    pub fn of(pid: u32) -> Result<Self, HarnessError> {
        let path = PathBuf::from(format!("/proc/{pid}/smaps"));
        let text =
            std::fs::read_to_string(&path).map_err(|source| HarnessError::Io { what: "cannot read", path, source })?;
        Ok(Self::parse(&text))
    }

    /// Groups the text of an smaps file (lines it does not know are skipped).
    pub fn parse(text: &str) -> Self {
        let mut by_name: HashMap<String, MappingGroup> = HashMap::new();
        let mut current: Option<String> = None;
        for line in text.lines() {
            if let Some(name) = mapping_name(line) {
                current = Some(name.clone());
                by_name.entry(name.clone()).or_insert_with(|| MappingGroup { name, ..Default::default() });
                continue;
            }
            let (Some(name), Some((key, value))) = (&current, line.split_once(':')) else { continue };
            let Some(kb) = value.trim().strip_suffix("kB").and_then(|v| v.trim().parse::<u64>().ok()) else {
                continue;
            };
            let Some(group) = by_name.get_mut(name) else { continue };
            match key {
                "Rss" => group.rss_kb += kb,
                "Private_Dirty" => group.private_dirty_kb += kb,
                "Private_Clean" => group.private_clean_kb += kb,
                "Shared_Clean" => group.shared_clean_kb += kb,
                _ => {}
            }
        }
        let mut groups: Vec<MappingGroup> = by_name.into_values().filter(|g| g.rss_kb > 0).collect();
        groups.sort_by(|a, b| b.rss_kb.cmp(&a.rss_kb).then_with(|| a.name.cmp(&b.name)));
        Smaps { groups }
    }

    /// The sum over every group.
    pub fn total(&self) -> MappingGroup {
        self.groups.iter().fold(MappingGroup { name: "total".into(), ..Default::default() }, |mut t, g| {
            t.rss_kb += g.rss_kb;
            t.private_dirty_kb += g.private_dirty_kb;
            t.private_clean_kb += g.private_clean_kb;
            t.shared_clean_kb += g.shared_clean_kb;
            t
        })
    }

    /// A table of the total and the `top` largest groups, in kB.
    pub fn table(&self, top: usize) -> String {
        let mut out = format!("{:>8} {:>8} {:>8} {:>8}  mapping\n", "rss", "priv-dirty", "priv-clean", "shared");
        for g in std::iter::once(self.total()).chain(self.groups.iter().take(top).cloned()) {
            out += &format!(
                "{:>8} {:>10} {:>10} {:>8}  {}\n",
                g.rss_kb, g.private_dirty_kb, g.private_clean_kb, g.shared_clean_kb, g.name
            );
        }
        out
    }
}

/// The name of the mapping a header line starts (`start-end perms offset dev inode [path]`), or `None` for a
/// field line. Anonymous mappings are `[anon]`; files are named without their folder.
fn mapping_name(line: &str) -> Option<String> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let (start, end) = range.split_once('-')?;
    if start.is_empty() || !start.chars().chain(end.chars()).all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let path = fields.nth(4).map(|_| line.splitn(6, char::is_whitespace).last().unwrap_or("").trim());
    let path = path.filter(|p| !p.is_empty()).unwrap_or("[anon]");
    Some(path.rsplit('/').next().unwrap_or(path).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
55d0c0000000-55d0c0d00000 r-xp 00001000 fe:00 1234                       /usr/bin/callbox
Size:              13312 kB
Rss:               10356 kB
Private_Clean:     10080 kB
Private_Dirty:       276 kB
Shared_Clean:          0 kB
VmFlags: rd ex mr mw me
7f0000000000-7f0000708000 rw-p 00000000 00:00 0 
Size:               7200 kB
Rss:                7204 kB
Private_Dirty:      7204 kB
7f0000800000-7f0000900000 rw-p 00000000 00:00 0
Rss:                 100 kB
Private_Dirty:       100 kB
7f1000000000-7f1000100000 r-xp 00000000 fe:00 99   /lib/x86_64-linux-gnu/libvpx.so.7.1.0
Rss:                1076 kB
Shared_Clean:       1060 kB
Private_Dirty:        16 kB
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
Rss:                 152 kB
Private_Dirty:       152 kB
7ffc10000000-7ffc10001000 r--p 00000000 00:00 0                          [vvar]
Rss:                   0 kB
";

    #[test]
    fn mappings_are_grouped_by_what_they_map() {
        let s = Smaps::parse(SAMPLE);
        let names: Vec<&str> = s.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["callbox", "[anon]", "libvpx.so.7.1.0", "[stack]"], "largest first, empty ones left out");
        let anon = &s.groups[1];
        assert_eq!((anon.rss_kb, anon.private_dirty_kb), (7304, 7304), "two anonymous mappings summed");
        let exe = &s.groups[0];
        assert_eq!((exe.rss_kb, exe.private_clean_kb, exe.private_dirty_kb), (10356, 10080, 276));
        assert_eq!(s.groups[2].shared_clean_kb, 1060);
        let t = s.total();
        assert_eq!(t.rss_kb, 10356 + 7304 + 1076 + 152);
        let table = s.table(2);
        assert_eq!(table.lines().count(), 4, "a header, the total and two groups:\n{table}");
        assert!(table.contains("[anon]") && !table.contains("libvpx"));
    }

    #[test]
    fn our_own_process_has_an_anonymous_and_a_file_backed_part() {
        let s = Smaps::of(std::process::id()).unwrap();
        let total = s.total();
        assert!(total.rss_kb > 0 && total.private_dirty_kb > 0, "{total:?}");
        assert!(s.groups.iter().any(|g| g.name.starts_with("callbox_tests")), "{}", s.table(10));
    }
}
