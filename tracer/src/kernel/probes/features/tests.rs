use super::*;
use crate::kernel::probes::fields::mmap_lock_layout;
use crate::kernel::tracefs::Format;

/// `mmap_lock:mmap_lock_acquire_returned` as kernels print it (6.18; 5.10 to 6.13; a
/// variant with the caller's `ip` some trees carried).
fn lock_format(fields: &[(&str, u16, u16)]) -> Format {
    let mut text = String::from(
        "format:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n",
    );
    for (decl, offset, size) in fields {
        text.push_str(&format!(
            "\tfield:{decl};\toffset:{offset};\tsize:{size};\tsigned:0;\n"
        ));
    }
    Format::parse(&text).unwrap()
}

#[test]
fn picks_the_ordering_probe_that_fits_the_lock_tracepoint() {
    let since_6_14 = lock_format(&[
        ("struct mm_struct * mm", 8, 8),
        ("u64 memcg_id", 16, 8),
        ("bool write", 24, 1),
        ("bool success", 25, 1),
    ]);
    assert_eq!(
        mmap_lock_layout(&since_6_14),
        Ok(("mmap_lock_acquire_returned", false))
    );
    let before = lock_format(&[
        ("struct mm_struct * mm", 8, 8),
        ("__data_loc char[] memcg_path", 16, 4),
        ("bool write", 20, 1),
        ("bool success", 21, 1),
    ]);
    assert_eq!(
        mmap_lock_layout(&before),
        Ok(("mmap_lock_acquire_returned_memcg_path", true))
    );
    let with_ip = lock_format(&[
        ("struct mm_struct * mm", 8, 8),
        ("__data_loc char[] memcg_path", 16, 4),
        ("bool write", 20, 1),
        ("void * ip", 24, 8),
        ("bool success", 32, 1),
    ]);
    assert!(mmap_lock_layout(&with_ip).is_err());
    let no_success = lock_format(&[("struct mm_struct * mm", 8, 8), ("bool write", 16, 1)]);
    assert!(mmap_lock_layout(&no_success).is_err());
}

#[test]
fn reads_the_version_of_a_release() {
    assert_eq!(kernel_version("5.10.0-32-cloud-amd64"), Some((5, 10)));
    assert_eq!(kernel_version("6.12.107+deb13-cloud-amd64"), Some((6, 12)));
    assert_eq!(kernel_version("6.18.44-fc-v769"), Some((6, 18)));
    assert_eq!(kernel_version("weird"), None);
}
