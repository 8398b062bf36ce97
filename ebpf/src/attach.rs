//! Loading an embedded object and attaching its XDP program to an interface
//! through a bpf_link, after clearing what a crashed or foreign owner left.
//!
//! A bpf_link lives exactly as long as the file descriptors that refer to it,
//! so when the owning process dies, however it dies, the kernel detaches the
//! program. Programs attached the old way (netlink, as `ip link set dev X
//! xdp obj ...` does) have no owner and stay until someone removes them; the
//! kernel also refuses a link on an interface that runs one. So before
//! attaching we remove any such program and log it.

use std::io;

use aya::Ebpf;
use aya::programs::links::Link as _;
use aya::programs::xdp::{XdpLink, XdpLinkId};
use aya::programs::{ProgramError, Xdp, XdpFlags};

use crate::error::EbpfError;
use crate::netlink;

/// How an XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// Driver mode where the driver supports it, generic mode otherwise.
    #[default]
    Auto,
    /// Native (driver) mode: the program runs before an skb exists.
    Driver,
    /// Generic (skb) mode: works on every interface, after skb allocation.
    Generic,
}

/// A loaded object whose program is attached to an interface; detaches on
/// drop.
pub(crate) struct Attached {
    link: Option<XdpLink>,
    bpf: Ebpf,
    program: &'static str,
    ifindex: u32,
    mode: AttachMode,
}

impl Attached {
    /// Loads `object`, clears stale netlink-attached programs from `ifindex`
    /// and attaches `program` to it, all in the calling thread's network
    /// namespace.
    pub(crate) fn new(
        program: &'static str,
        object: &[u8],
        ifindex: u32,
        mode: AttachMode,
    ) -> Result<Self, EbpfError> {
        // Index 0 means "no interface" to the kernel, which calls it EINVAL.
        if ifindex == 0 {
            return Err(EbpfError::NoSuchInterface { ifindex });
        }
        // Also tells a missing interface apart before any loading work.
        let state = netlink::xdp_query(ifindex).map_err(|e| netlink_err("query", ifindex, e))?;

        let mut bpf = Ebpf::load(object).map_err(|e| EbpfError::Load {
            program,
            source: Box::new(e),
        })?;
        let prog: &mut Xdp = bpf
            .program_mut(program)
            .ok_or_else(|| EbpfError::ObjectMismatch {
                program,
                what: format!("no program named {program}"),
            })?
            .try_into()
            .map_err(EbpfError::program(program))?;
        prog.load().map_err(EbpfError::program(program))?;

        clear_stale(program, ifindex, state)?;

        let (id, mode) = match mode {
            AttachMode::Driver | AttachMode::Generic => (link(prog, program, ifindex, mode)?, mode),
            AttachMode::Auto => match link(prog, program, ifindex, AttachMode::Driver) {
                Ok(id) => (id, AttachMode::Driver),
                Err(EbpfError::Attach { source, .. }) if falls_back(&source) => {
                    tracing::info!(
                        program,
                        ifindex,
                        error = %source,
                        "driver-mode XDP refused; attaching in generic mode"
                    );
                    (
                        link(prog, program, ifindex, AttachMode::Generic)?,
                        AttachMode::Generic,
                    )
                }
                Err(e) => return Err(e),
            },
        };
        let link = prog.take_link(id).map_err(EbpfError::program(program))?;
        tracing::debug!(
            program,
            ifindex,
            ?mode,
            "XDP program attached through bpf_link"
        );
        Ok(Self {
            link: Some(link),
            bpf,
            program,
            ifindex,
            mode,
        })
    }

    pub(crate) fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub(crate) fn mode(&self) -> AttachMode {
        self.mode
    }

    /// The map `name`, moved out of the object.
    pub(crate) fn take_map(&mut self, name: &'static str) -> Result<aya::maps::Map, EbpfError> {
        self.bpf
            .take_map(name)
            .ok_or_else(|| EbpfError::ObjectMismatch {
                program: self.program,
                what: format!("no map named {name}"),
            })
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            match link.detach() {
                Ok(()) => tracing::debug!(
                    program = self.program,
                    ifindex = self.ifindex,
                    "XDP program detached"
                ),
                Err(e) => tracing::warn!(
                    program = self.program,
                    ifindex = self.ifindex,
                    error = %e,
                    "detaching XDP program failed"
                ),
            }
        }
    }
}

/// Whether a driver-mode refusal means "try generic": anything but the
/// interface being gone or taken, which generic mode would not fix.
fn falls_back(e: &io::Error) -> bool {
    !matches!(
        e.raw_os_error(),
        Some(libc::ENODEV | libc::EBUSY | libc::EEXIST)
    )
}

fn link(
    prog: &mut Xdp,
    program: &'static str,
    ifindex: u32,
    mode: AttachMode,
) -> Result<XdpLinkId, EbpfError> {
    let flags = match mode {
        AttachMode::Generic => XdpFlags::SKB_MODE,
        AttachMode::Driver | AttachMode::Auto => XdpFlags::DRV_MODE,
    };
    prog.attach_to_if_index(ifindex, flags)
        .map_err(|e| match e {
            ProgramError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::ENODEV) => {
                EbpfError::NoSuchInterface { ifindex }
            }
            ProgramError::SyscallError(s) => EbpfError::Attach {
                program,
                ifindex,
                mode,
                source: s.io_error,
            },
            other => EbpfError::program(program)(other),
        })
}

/// Detaches every netlink-attached program on the interface; a program held
/// by a bpf_link belongs to a live owner and makes the interface busy.
fn clear_stale(
    program: &'static str,
    ifindex: u32,
    state: netlink::XdpState,
) -> Result<(), EbpfError> {
    for (prog_id, flags) in state.programs() {
        // Named before it goes: once detached, nothing may hold it any more.
        let name = program_name(prog_id);
        match netlink::xdp_detach(ifindex, flags) {
            Ok(()) => tracing::warn!(
                attaching = program,
                ifindex,
                stale_id = prog_id,
                stale_name = %name,
                mode = mode_name(flags),
                "removed an XDP program attached through netlink (a crashed owner's leftover \
                 or a foreign program)"
            ),
            Err(e) if netlink::errno(&e) == Some(libc::EBUSY) => {
                return Err(EbpfError::Busy { ifindex, prog_id });
            }
            Err(e) => return Err(netlink_err("detach", ifindex, e)),
        }
    }
    Ok(())
}

fn netlink_err(op: &'static str, ifindex: u32, e: io::Error) -> EbpfError {
    if netlink::errno(&e) == Some(libc::ENODEV) {
        EbpfError::NoSuchInterface { ifindex }
    } else {
        EbpfError::Netlink {
            op,
            ifindex,
            source: e,
        }
    }
}

fn mode_name(flags: u32) -> &'static str {
    match flags {
        netlink::XDP_FLAGS_SKB_MODE => "generic",
        netlink::XDP_FLAGS_DRV_MODE => "driver",
        _ => "offload",
    }
}

/// The kernel's name for a program, for the log; best effort.
fn program_name(prog_id: u32) -> String {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == prog_id)
        .and_then(|p| p.name_as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}
