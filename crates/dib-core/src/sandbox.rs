//! Entering the new OS: a private mount namespace (and, without root, a user namespace) in
//! which `/proc`, `/dev`, `/sys` and the hooks folder are bound into the target root before
//! `chroot`.
//!
//! Every mount is made inside the child's own mount namespace, so none is ever visible on the
//! host and the kernel removes them all when the last process in the namespace exits: teardown
//! cannot be skipped by an error, a signal or a panic, and there is nothing to unmount. This is
//! why chroot phases need no cleanup stack.
//!
//! The work runs between fork and exec, where only async-signal-safe calls are allowed: every
//! path and map line is prepared as a C string beforehand and the child makes raw syscalls.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

/// How the child gets the right to mount and chroot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// We are root: a new mount namespace is enough.
    Root,
    /// Not root: a user namespace in which our uid and gid are root, then a mount namespace.
    /// Files the hooks create are owned by us on the host and by root inside.
    UserNamespace { uid: u32, gid: u32 },
}

impl Privilege {
    /// What the current process has.
    pub fn current() -> Self {
        let uid = nix::unistd::geteuid().as_raw();
        if uid == 0 {
            Privilege::Root
        } else {
            Privilege::UserNamespace {
                uid,
                gid: nix::unistd::getegid().as_raw(),
            }
        }
    }
}

struct BindMount {
    source: CString,
    target: CString,
    read_only: bool,
}

/// A prepared way into a namespace and, optionally, a chroot.
pub struct Sandbox {
    privilege: Privilege,
    root: Option<CString>,
    binds: Vec<BindMount>,
    uid_map: CString,
    gid_map: CString,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("privilege", &self.privilege)
            .field("root", &self.root)
            .field("binds", &self.binds.len())
            .finish()
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

impl Sandbox {
    /// Only the namespaces, no chroot: for tools that must see the tree's files as the hooks
    /// did (mke2fs populating a filesystem from a tree built in a user namespace).
    pub fn namespace_only(privilege: Privilege) -> Self {
        let (uid_map, gid_map) = maps(privilege);
        Sandbox {
            privilege,
            root: None,
            binds: Vec::new(),
            uid_map,
            gid_map,
        }
    }

    /// A chroot into `root` with the host's `/proc`, `/dev` (with `/dev/pts`) and `/sys`
    /// (read-only) bound in, and `hooks` bound read-only at `/tmp/in_target.d`. The mount
    /// points are created now if missing.
    pub fn chroot(privilege: Privilege, root: &Path, hooks: Option<&Path>) -> io::Result<Self> {
        let mut sandbox = Sandbox::namespace_only(privilege);
        sandbox.root = Some(c_path(root)?);
        let mut bind = |source: &Path, inside: &str, read_only: bool| -> io::Result<()> {
            let target = root.join(inside);
            std::fs::create_dir_all(&target)?;
            sandbox.binds.push(BindMount {
                source: c_path(source)?,
                target: c_path(&target)?,
                read_only,
            });
            Ok(())
        };
        bind(Path::new("/proc"), "proc", false)?;
        bind(Path::new("/dev"), "dev", false)?;
        bind(Path::new("/sys"), "sys", true)?;
        if let Some(hooks) = hooks {
            bind(hooks, "tmp/in_target.d", true)?;
        }
        Ok(sandbox)
    }

    /// Enters the namespaces and the chroot. Call only in a freshly forked child.
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY (every block below): raw syscalls on C strings prepared before the fork and
        // alive as long as `self`; null pointers only where the syscalls allow them.
        match self.privilege {
            Privilege::Root => {
                // SAFETY: see above.
                check(unsafe { libc::unshare(libc::CLONE_NEWNS) })?
            }
            Privilege::UserNamespace { .. } => {
                // SAFETY: see above.
                check(unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) })?;
                write_file(c"/proc/self/setgroups", b"deny")?;
                write_file(c"/proc/self/uid_map", self.uid_map.as_bytes())?;
                write_file(c"/proc/self/gid_map", self.gid_map.as_bytes())?;
            }
        }
        // Nothing we mount may propagate back to the host's namespace.
        // SAFETY: see above.
        check(unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        })?;
        for bind in &self.binds {
            // SAFETY: see above.
            check(unsafe {
                libc::mount(
                    bind.source.as_ptr(),
                    bind.target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                )
            })?;
            if bind.read_only {
                // SAFETY: see above.
                check(unsafe {
                    libc::mount(
                        std::ptr::null(),
                        bind.target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                        std::ptr::null(),
                    )
                })?;
            }
        }
        if let Some(root) = &self.root {
            // SAFETY: see above.
            check(unsafe { libc::chroot(root.as_ptr()) })?;
            // SAFETY: see above.
            check(unsafe { libc::chdir(c"/".as_ptr()) })?;
        }
        Ok(())
    }

    /// This sandbox as before-exec work for a process runner.
    pub fn into_before_exec(self) -> refresh_config::BeforeExec {
        let sandbox = Arc::new(self);
        Arc::new(move || sandbox.enter())
    }

    /// Applies this sandbox to a command.
    pub fn apply(self: &Arc<Self>, command: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        let sandbox = Arc::clone(self);
        // SAFETY: `enter` makes only raw, async-signal-safe syscalls on prepared strings.
        unsafe { command.pre_exec(move || sandbox.enter()) };
    }
}

fn maps(privilege: Privilege) -> (CString, CString) {
    match privilege {
        Privilege::Root => (CString::default(), CString::default()),
        Privilege::UserNamespace { uid, gid } => (
            CString::new(format!("0 {uid} 1\n")).unwrap_or_default(),
            CString::new(format!("0 {gid} 1\n")).unwrap_or_default(),
        ),
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn write_file(path: &std::ffi::CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: open/write/close on a valid C string and a live buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let error = io::Error::last_os_error();
        libc::close(fd);
        if n < 0 {
            return Err(error);
        }
    }
    Ok(())
}
