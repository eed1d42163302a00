//! Which VMAs the kernel names `[heap]`, and making the model name the same ones. The rule
//! (`vma_is_initial_heap`) changed between kernels, and some layouts leave the model without
//! the break (an attach: no brk call seen yet) or with an unusual `start_brk` (a static PIE's
//! heap lies far below its image; a program exec'd from a memfd): whatever the model cannot
//! tell, /proc's own naming at a seed or a resync settles, so a resync converges.

/// The kernel's test of "this anonymous VMA is the heap".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HeapRule {
    /// `vm_start < brk && vm_end > start_brk`: the VMA overlaps the heap (Linux 6.18 here: the
    /// bss VMA that ends where an empty heap starts is not `[heap]`).
    #[default]
    Overlap,
    /// `vm_start <= brk && vm_end >= start_brk`: touching counts too (the rule since 6.6's
    /// `vma_is_initial_heap`, and `show_map_vma` before it, on some kernels).
    Touch,
}

impl HeapRule {
    pub fn names(self, vma_start: u64, vma_end: u64, start_brk: u64, brk: u64) -> bool {
        match self {
            HeapRule::Overlap => vma_start < brk && vma_end > start_brk,
            HeapRule::Touch => vma_start <= brk && vma_end >= start_brk,
        }
    }
}

/// The ranges a `/proc/PID/maps` text names `[heap]`.
pub fn heap_lines(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter(|l| l.trim_end().ends_with(" [heap]"))
        .filter_map(|l| {
            let (start, end) = l.split_whitespace().next()?.split_once('-')?;
            Some((
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AddressSpace;
    use crate::model::maps::{self, name_of};

    fn seeded(text: &str, start_brk: u64) -> AddressSpace {
        let mut s = AddressSpace::new(4096);
        s.replace_vmas(maps::parse(text).unwrap());
        s.start_brk = Some(start_brk);
        s
    }

    fn names(s: &AddressSpace) -> Vec<String> {
        s.vmas().map(|v| name_of(s, v)).collect()
    }

    #[test]
    fn the_bss_before_an_empty_heap_is_not_the_heap_where_the_kernel_says_so() {
        // setarch -R: the bss ends where the (empty) heap starts; Linux 6.18 does not name it.
        let text = "555555558000-555555559000 rw-p 00003000 fe:00 9 /bin/x\n\
                    555555559000-555555659000 rw-p 00000000 00:00 0 \n";
        let mut s = seeded(text, 0x5555_5565_9000);
        s.heap_rule = HeapRule::Touch;
        s.brk = Some(0x5555_5565_9000);
        assert_eq!(names(&s)[1], "[heap]", "the model's old rule named it");
        assert!(s.agree_on_heap(&heap_lines(text)));
        assert_eq!(names(&s)[1], "");
        // A kernel that names it teaches the other rule.
        let named = text.replace("0 \n", "0 [heap]\n");
        let mut s = seeded(&named, 0x5555_5565_9000);
        s.brk = Some(0x5555_5565_9000);
        assert!(s.agree_on_heap(&heap_lines(&named)));
        assert_eq!(s.heap_rule, HeapRule::Touch);
        assert_eq!(names(&s)[1], "[heap]");
    }

    #[test]
    fn a_heap_not_holding_start_brk_takes_its_break_from_proc() {
        // The first heap page was unmapped after an attach (no brk call seen): the model only
        // knew the VMA holding start_brk.
        let text = "555500101000-555500121000 rw-p 00000000 00:00 0 [heap]\n\
                    7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n";
        let mut s = seeded(text, 0x5555_0010_0000);
        assert_eq!(names(&s)[0], "");
        assert!(s.agree_on_heap(&heap_lines(text)));
        assert_eq!(names(&s), ["[heap]", ""]);
        assert_eq!(s.brk, Some(0x5555_0012_1000));
    }

    #[test]
    fn unknown_start_brk_comes_from_the_heap_line() {
        let text = "5555721d4000-5555721d5000 rw-p 00000000 00:00 0 [heap]\n";
        let mut s = AddressSpace::new(4096);
        s.replace_vmas(maps::parse(text).unwrap());
        assert!(s.agree_on_heap(&heap_lines(text)));
        assert_eq!(names(&s), ["[heap]"]);
        assert_eq!(s.start_brk, Some(0x5555_721d_4000));
    }
}
