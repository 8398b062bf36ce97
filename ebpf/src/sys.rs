//! The one bpf(2) command aya does not offer for the maps we use: deleting
//! an XSKMAP entry.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `BPF_MAP_DELETE_ELEM` from <linux/bpf.h>.
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;

/// The prefix of `union bpf_attr` that `BPF_MAP_DELETE_ELEM` reads.
#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// Deletes the entry `key` of the map `map`.
pub(crate) fn map_delete(map: BorrowedFd<'_>, key: &u32) -> io::Result<()> {
    let attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: key as *const u32 as u64,
        value: 0,
        flags: 0,
    };
    // SAFETY: `attr` is a valid, zero-padded bpf_attr prefix of the size
    // passed, and `key` outlives the call; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_DELETE_ELEM,
            &raw const attr,
            std::mem::size_of::<MapElemAttr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
