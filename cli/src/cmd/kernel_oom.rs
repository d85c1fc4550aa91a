//! The kernel's own count of OOM kills in a dead writer's cgroup, read
//! after the death by whoever reads the ring (`info`, `on-failure`), where
//! that cgroup is still there and visible: the writer recorded its cgroup's
//! path and the `oom_kill` count when it began watching it
//! (`shm-layout.md`, 9.2), so a rise it did not live to see is a kill that
//! came after its last look.

use std::path::{Path, PathBuf};

use blackbox_reader::Header;
use serde_json::{json, Value};

/// What the kernel's count says about a writer's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelCount {
    /// The writer recorded no cgroup (no heartbeat, or an older writer).
    Unknown,
    /// The ring was written in another boot: its cgroup is long gone.
    OtherBoot { cgroup: String },
    /// The cgroup is not there (removed with its unit or pod, or in
    /// another cgroup namespace or container).
    Gone { cgroup: String, dir: PathBuf },
    /// Read: `oom_kill` now, and how many of those came after the writer's
    /// last look.
    Counted {
        cgroup: String,
        oom_kill: u64,
        unseen: u64,
    },
}

impl KernelCount {
    /// Reads the count for the writer of `header` on this machine.
    pub fn read(header: &Header) -> KernelCount {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        KernelCount::read_under(header, Path::new("/sys/fs/cgroup"), boot.trim())
    }

    /// As [`KernelCount::read`], with the cgroup file system at `root` and
    /// this boot's id (for tests).
    pub fn read_under(header: &Header, root: &Path, boot_id: &str) -> KernelCount {
        let (Some((version, cgroup)), Some(m)) = (&header.cgroup, header.memory) else {
            return KernelCount::Unknown;
        };
        let cgroup = cgroup.clone();
        if !boot_id.is_empty() && header.boot_id_text() != boot_id {
            return KernelCount::OtherBoot { cgroup };
        }
        let rel = cgroup.trim_start_matches('/');
        let (dir, file) = if *version == 1 {
            (root.join("memory").join(rel), "memory.oom_control")
        } else {
            let dir = [root.to_path_buf(), root.join("unified")]
                .into_iter()
                .map(|base| base.join(rel))
                .find(|d| d.join("memory.events").exists())
                .unwrap_or_else(|| root.join(rel));
            (dir, "memory.events")
        };
        let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
            return KernelCount::Gone { cgroup, dir };
        };
        let oom_kill = text
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let unseen = oom_kill
            .saturating_sub(m.oom_kill_base)
            .saturating_sub(m.oom_kill_events);
        KernelCount::Counted {
            cgroup,
            oom_kill,
            unseen,
        }
    }

    /// The kernel counted an OOM kill in the cgroup after the writer's
    /// last look.
    pub fn oom_killed(&self) -> bool {
        matches!(self, KernelCount::Counted { unseen, .. } if *unseen > 0)
    }

    /// One line, or none where the writer recorded no cgroup.
    pub fn text(&self) -> Option<String> {
        Some(match self {
            KernelCount::Unknown => return None,
            KernelCount::OtherBoot { cgroup } => {
                format!("cgroup {cgroup} was in another boot: no kernel count")
            }
            KernelCount::Gone { cgroup, dir } => format!(
                "cgroup {cgroup} is gone or not visible here ({} cannot be read): no kernel count",
                dir.display()
            ),
            KernelCount::Counted {
                cgroup,
                oom_kill,
                unseen: 0,
            } => format!(
                "cgroup {cgroup}: oom_kill {oom_kill}, none after the writer's last look: no OOM kill of the writer counted"
            ),
            KernelCount::Counted {
                cgroup,
                oom_kill,
                unseen,
            } => format!(
                "cgroup {cgroup}: oom_kill {oom_kill}, {unseen} after the writer's last look: OOM-killed (the kernel's count)"
            ),
        })
    }

    /// The `kernel` object of `info --json` and `on-failure --json`.
    pub fn to_json(&self) -> Value {
        match self {
            KernelCount::Unknown => Value::Null,
            KernelCount::OtherBoot { cgroup } => {
                json!({"cgroup": cgroup, "visible": false, "why": "another boot"})
            }
            KernelCount::Gone { cgroup, dir } => json!({
                "cgroup": cgroup, "visible": false,
                "why": format!("{} cannot be read", dir.display()),
            }),
            KernelCount::Counted {
                cgroup,
                oom_kill,
                unseen,
            } => json!({
                "cgroup": cgroup, "visible": true, "oom_kill": oom_kill,
                "oom_kill_after_last_look": unseen, "oom_killed": *unseen > 0,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blackbox_recorder::layout::*;

    /// A dead writer's header: a ring the recorder wrote, with the memory
    /// area as a heartbeat thread watching `cgroup` (v2) left it.
    fn header(cgroup: &str, base: u64, seen: u64) -> Header {
        let dir = std::env::temp_dir().join(format!("bbx-kernel-oom-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{base}-{seen}-{}.ring", cgroup.len()));
        let rec = blackbox_recorder::Recorder::builder(&path)
            .capacity(64 * 1024)
            .heartbeat(None)
            .create()
            .unwrap();
        rec.close();
        let mut b = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        b[H_MEM_CGROUP_VERSION..H_MEM_CGROUP_VERSION + 4].copy_from_slice(&2u32.to_le_bytes());
        b[H_MEM_CGROUP_PATH..H_MEM_CGROUP_PATH + cgroup.len()].copy_from_slice(cgroup.as_bytes());
        for (off, v) in [
            (H_MEM_SAMPLED_UNIX_NS, 1u64),
            (H_MEM_OOM_KILL_BASE, base),
            (H_MEM_OOM_KILL_EVENTS, seen),
        ] {
            b[off..off + 8].copy_from_slice(&v.to_le_bytes());
        }
        Header::parse(&b, b.len() as u64).unwrap()
    }

    #[test]
    fn a_kill_after_the_last_look_is_the_kernels_oom_kill() {
        let root = std::env::temp_dir().join(format!("bbx-kernel-oom-fs-{}", std::process::id()));
        let unit = root.join("system.slice/leak.service");
        std::fs::create_dir_all(&unit).unwrap();
        std::fs::write(
            unit.join("memory.events"),
            "low 0\nhigh 0\nmax 40\noom 2\noom_kill 2\noom_group_kill 0\n",
        )
        .unwrap();
        let h = header("/system.slice/leak.service", 1, 0);
        let boot = h.boot_id_text();
        let k = KernelCount::read_under(&h, &root, &boot);
        assert!(k.oom_killed(), "{k:?}");
        assert_eq!(
            k.text().unwrap(),
            "cgroup /system.slice/leak.service: oom_kill 2, 1 after the writer's last look: OOM-killed (the kernel's count)"
        );
        // The one kill happened while the writer watched: not the writer's.
        let h = header("/system.slice/leak.service", 1, 1);
        let k = KernelCount::read_under(&h, &root, &boot);
        assert!(!k.oom_killed(), "{k:?}");
        // Gone with its unit.
        let h = header("/system.slice/gone.service", 0, 0);
        let k = KernelCount::read_under(&h, &root, &boot);
        assert!(matches!(k, KernelCount::Gone { .. }), "{k:?}");
        assert!(k.text().unwrap().contains("is gone or not visible here"));
        // Another boot.
        let k = KernelCount::read_under(&h, &root, "00000000-0000-0000-0000-000000000000");
        assert!(matches!(k, KernelCount::OtherBoot { .. }), "{k:?}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
