//! Dropping root after binding: the binaries' `--user`.
//!
//! Ports below 1024 need root (or CAP_NET_BIND_SERVICE) only to bind; once
//! every listener is bound, the process becomes an unprivileged user so a
//! flaw elsewhere does not hand out root. glibc applies `setgroups`,
//! `setgid` and `setuid` to every thread of the process (POSIX semantics),
//! so tokio's worker threads change with the main thread.
//!
//! Only CAP_NET_BIND_SERVICE is kept (see [`drop_privileges`]).
//!
//! With this module, sys.rs is the crate's other `unsafe` code: libc calls
//! with buffers owned here and checked results.

use std::ffi::CString;
use std::io;

use crate::Error;

/// The user and group ids a name resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// Look up `user` in the password database (name, or a numeric id).
pub fn lookup_user(user: &str) -> Result<Account, Error> {
    let unknown = || Error::UnknownUser { user: user.to_string() };
    let name = CString::new(user).map_err(|_| unknown())?;
    // SAFETY: zeroed is a valid `passwd` (null pointers, zero ids); getpwnam_r fills it.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to a live local of the right type and `buffer.len()` is its length.
    let status = unsafe { libc::getpwnam_r(name.as_ptr(), &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
    if status == 0 && !found.is_null() {
        return Ok(Account { uid: entry.pw_uid, gid: entry.pw_gid });
    }
    // A numeric id need not be in the database.
    match user.parse::<u32>() {
        Ok(id) => Ok(Account { uid: id, gid: id }),
        Err(_) => Err(unknown()),
    }
}

/// Linux's capability number for binding ports below 1024.
const CAP_NET_BIND_SERVICE: u32 = 10;

/// Become `user` for good: supplementary groups cleared, group and user
/// set, and checked that root cannot be taken back. Every capability goes
/// but CAP_NET_BIND_SERVICE, which stays so that listeners added later (a
/// reload, an API call) can still bind port 53; nothing else of root
/// remains.
pub fn drop_privileges(user: &str) -> Result<Account, Error> {
    let account = lookup_user(user)?;
    // Keep the permitted capabilities across setuid, to keep the one we need.
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        return Err(Error::DropPrivileges {
            user: user.to_string(),
            step: "prctl(PR_SET_KEEPCAPS)",
            source: io::Error::last_os_error(),
        });
    }
    let failed =
        |step: &'static str| Error::DropPrivileges { user: user.to_string(), step, source: io::Error::last_os_error() };
    let groups = [account.gid as libc::gid_t];
    // SAFETY: `groups` is a live array of one gid.
    if unsafe { libc::setgroups(1, groups.as_ptr()) } != 0 {
        return Err(failed("setgroups"));
    }
    // SAFETY: plain system calls on integers.
    if unsafe { libc::setgid(account.gid) } != 0 {
        return Err(failed("setgid"));
    }
    // SAFETY: as above.
    if unsafe { libc::setuid(account.uid) } != 0 {
        return Err(failed("setuid"));
    }
    // Permitted and effective: CAP_NET_BIND_SERVICE alone; inheritable: none.
    let header = CapabilityHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let bind = 1u32 << CAP_NET_BIND_SERVICE;
    let data = [
        CapabilityData { effective: bind, permitted: bind, inheritable: 0 },
        CapabilityData { effective: 0, permitted: 0, inheritable: 0 },
    ];
    // SAFETY: capset reads one header and two data structs, laid out as the kernel's (repr(C)).
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(failed("capset"));
    }
    // SAFETY: as above; the effective ids must now be the user's, and root gone for good.
    let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
    // SAFETY: as above.
    if uid != account.uid || euid != account.uid || (account.uid != 0 && unsafe { libc::setuid(0) } == 0) {
        return Err(Error::DropPrivileges {
            user: user.to_string(),
            step: "verify",
            source: io::Error::other("the process could take root back"),
        });
    }
    Ok(account)
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The kernel's `__user_cap_header_struct`.
#[repr(C)]
struct CapabilityHeader {
    version: u32,
    pid: libc::c_int,
}

/// The kernel's `__user_cap_data_struct` (two of them for version 3: capabilities 0-31 and 32-63).
#[repr(C)]
struct CapabilityData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_by_name_or_number_and_unknown_names_are_errors() {
        assert_eq!(lookup_user("root").unwrap(), Account { uid: 0, gid: 0 });
        assert_eq!(lookup_user("65534").unwrap().uid, 65_534);
        let error = lookup_user("no-such-user-signpost").unwrap_err();
        assert!(error.to_string().contains("no-such-user-signpost"), "{error}");
        assert!(lookup_user("nul\0byte").is_err());
    }
}
