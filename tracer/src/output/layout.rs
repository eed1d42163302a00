//! Draws a process's address space the way the seeds do: from high to low addresses, the
//! areas above the stack, the stack, the mmap area, the heap and the program image, with
//! their sizes and the gaps between them, then the virtual size by region.

use std::fmt::Write as _;

use crate::{
    model::{
        AddressSpace,
        region::{Region, classified},
        vma::Vma,
    },
    units::human_bytes,
};

/// Gaps at least this large separate the program image from the mmap area when there is no
/// heap to tell them apart (ASLR puts terabytes between them).
const ZONE_GAP: u64 = 1 << 30;

struct Zone<'a> {
    name: &'static str,
    vmas: Vec<(&'a Vma, Region)>,
}

impl Zone<'_> {
    fn start(&self) -> u64 {
        self.vmas.first().map_or(0, |(v, _)| v.start)
    }

    fn end(&self) -> u64 {
        self.vmas.last().map_or(0, |(v, _)| v.end)
    }

    fn mapped(&self) -> u64 {
        self.vmas.iter().map(|(v, _)| v.len()).sum()
    }

    /// "file 1.9 MiB, anon 520.0 KiB" when the zone holds several regions.
    fn breakdown(&self) -> String {
        let mut parts = Vec::new();
        for region in Region::ALL {
            let bytes: u64 = self
                .vmas
                .iter()
                .filter(|(_, r)| *r == region)
                .map(|(v, _)| v.len())
                .sum();
            if bytes > 0 {
                parts.push(format!("{} {}", region.name(), human_bytes(bytes)));
            }
        }
        if parts.len() > 1 {
            format!(": {}", parts.join(", "))
        } else {
            String::new()
        }
    }
}

fn zones(space: &AddressSpace) -> Vec<Zone<'_>> {
    let all = classified(space);
    let stack = all.iter().position(|(_, r)| *r == Region::Stack);
    let first_heap = all.iter().position(|(_, r)| *r == Region::Heap);
    let last_heap = all.iter().rposition(|(_, r)| *r == Region::Heap);
    let below_stack = stack.unwrap_or(all.len());
    // The program image ends where the heap starts, or at the first big gap.
    let program_end = first_heap.unwrap_or_else(|| {
        (1..below_stack)
            .find(|&i| all[i].0.start - all[i - 1].0.end >= ZONE_GAP)
            .unwrap_or(below_stack)
    });
    let mmap_start = last_heap.map_or(program_end, |i| i + 1);
    let mut zones = vec![
        Zone {
            name: "program",
            vmas: all[..program_end].to_vec(),
        },
        Zone {
            name: "heap",
            vmas: first_heap.map_or(vec![], |f| all[f..mmap_start].to_vec()),
        },
        Zone {
            name: "mmap area",
            vmas: all[mmap_start.min(below_stack)..below_stack].to_vec(),
        },
    ];
    if let Some(s) = stack {
        zones.push(Zone {
            name: "stack",
            vmas: vec![all[s]],
        });
        zones.push(Zone {
            name: "above the stack",
            vmas: all[s + 1..].to_vec(),
        });
    }
    zones.retain(|z| !z.vmas.is_empty());
    zones
}

/// The drawing, each line indented by `indent`.
pub fn render(space: &AddressSpace, indent: &str) -> String {
    let mut out = String::new();
    let zones = zones(space);
    let mut above: Option<u64> = None;
    for zone in zones.iter().rev() {
        if let Some(higher_start) = above {
            let gap = higher_start.saturating_sub(zone.end());
            let _ = writeln!(out, "{indent}{:>33} {}", "gap", human_bytes(gap));
        }
        let _ = writeln!(
            out,
            "{indent}{:012x}-{:012x} {:>11}  {} ({} VMAs){}",
            zone.start(),
            zone.end(),
            human_bytes(zone.mapped()),
            zone.name,
            zone.vmas.len(),
            zone.breakdown()
        );
        above = Some(zone.start());
    }
    out
}

/// "VSZ 12.3 MiB: text 1.2 MiB, data ..." (regions with no bytes left out).
pub fn vsz_line(space: &AddressSpace) -> String {
    let mut totals = [0u64; Region::ALL.len()];
    for (vma, region) in classified(space) {
        totals[Region::ALL.iter().position(|r| *r == region).unwrap_or(0)] += vma.len();
    }
    let parts: Vec<String> = Region::ALL
        .iter()
        .zip(totals)
        .filter(|(_, bytes)| *bytes > 0)
        .map(|(r, bytes)| format!("{} {}", r.name(), human_bytes(bytes)))
        .collect();
    format!(
        "VSZ {} in {} VMAs: {}",
        human_bytes(space.virtual_size()),
        space.vma_count(),
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::maps;

    #[test]
    fn draws_the_seed_layout_from_high_to_low() {
        let text = "\
555500000000-555500001000 r--p 00000000 fe:00 1                          /bin/prog
555500001000-555500002000 r-xp 00001000 fe:00 1                          /bin/prog
555500002000-555500003000 rw-p 00002000 fe:00 1                          /bin/prog
555500100000-555500121000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000010000 rw-p 00000000 00:00 0 
7f0000010000-7f0000012000 r-xp 00000000 00:00 0                          [vdso]
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
";
        let mut s = AddressSpace::new(4096);
        s.replace_vmas(maps::parse(text).unwrap());
        s.start_brk = Some(0x555500100000);
        s.brk = Some(0x555500121000);
        s.start_stack = Some(0x7ffd00020000);
        let drawing = render(&s, "");
        let lines: Vec<&str> = drawing.lines().collect();
        assert!(lines[0].ends_with("132.0 KiB  stack (1 VMAs)"), "{drawing}");
        assert!(lines[1].trim_start().starts_with("gap"), "{drawing}");
        assert!(
            lines[2].contains("mmap area (2 VMAs): anon 64.0 KiB, other 8.0 KiB"),
            "{drawing}"
        );
        assert!(lines[4].contains("heap (1 VMAs)"), "{drawing}");
        assert!(lines[5].trim() == "gap 1012.0 KiB", "{drawing}");
        assert!(
            lines[6].contains("program (3 VMAs): text 4.0 KiB, data 4.0 KiB, file 4.0 KiB"),
            "{drawing}"
        );
        assert_eq!(
            vsz_line(&s),
            "VSZ 348.0 KiB in 7 VMAs: text 4.0 KiB, data 4.0 KiB, heap 132.0 KiB, stack 132.0 KiB, anon 64.0 KiB, file 4.0 KiB, other 8.0 KiB"
        );
    }
}
