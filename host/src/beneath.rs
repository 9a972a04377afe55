//! Files opened beneath a directory, with the kernel doing the path walk: `openat2(2)` with
//! `RESOLVE_BENEATH` refuses any `..`, absolute symlink or relative symlink that would leave the
//! directory, at the moment of opening. A script names controller files (copy and template
//! sources, fetch destinations) and can create symlinks in its scratch directory; checking a
//! path and then using it would let a link swapped in between lead anywhere, so every such file
//! is reached through a [`Dir`] instead (issue 11: "by construction, not by checking a path").

use std::ffi::{CString, OsString};
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// An open directory; every path given to its methods is relative to it and resolved beneath it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

/// What kind of entry a directory listing found (links are not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Link,
    /// Anything else (fifo, socket, device).
    Other,
}

impl Dir {
    /// Open `path` itself (a root the job chose, trusted: it is walked as usual).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let c = cstring(path)?;
        // SAFETY: open(2) with a valid C string; the fd is owned from here on.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd nobody else owns.
        Ok(Dir {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The directory `rel` below this one.
    pub fn dir(&self, rel: &Path) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.openat2(rel, libc::O_PATH | libc::O_DIRECTORY, 0)?,
        })
    }

    /// Metadata of `rel` (a link beneath this directory is followed).
    pub fn metadata(&self, rel: &Path) -> io::Result<Metadata> {
        File::from(self.openat2(rel, libc::O_PATH, 0)?).metadata()
    }

    /// The whole content of the file `rel`.
    pub fn read(&self, rel: &Path) -> io::Result<Vec<u8>> {
        let mut data = Vec::new();
        File::from(self.openat2(rel, libc::O_RDONLY, 0)?).read_to_end(&mut data)?;
        Ok(data)
    }

    /// Create or replace the file `rel` with `data` (new files: mode 0666 less the umask).
    pub fn write(&self, rel: &Path, data: &[u8]) -> io::Result<()> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC;
        File::from(self.openat2(rel, flags, 0o666)?).write_all(data)
    }

    /// Create `rel` and the directories above it that are missing, each one made inside its
    /// parent as opened beneath this directory (so no directory is ever made outside it).
    pub fn create_dir_all(&self, rel: &Path) -> io::Result<()> {
        let mut done = PathBuf::new();
        for part in rel.components() {
            let Component::Normal(name) = part else {
                if part == Component::CurDir {
                    continue;
                }
                return Err(outside(rel));
            };
            let parent = self.dir(&done)?;
            let c = cstring(Path::new(name))?;
            // SAFETY: mkdirat(2) relative to an fd we own, with a valid C string.
            let r = unsafe { libc::mkdirat(parent.fd.as_raw_fd(), c.as_ptr(), 0o777) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(e);
                }
            }
            done.push(name);
        }
        // What exists must be a directory beneath us (an existing link out is refused here).
        self.dir(rel).map(drop)
    }

    /// The entries of this directory, sorted by name, links not followed.
    pub fn entries(&self) -> io::Result<Vec<(OsString, Kind)>> {
        let listing = self.openat2(Path::new("."), libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        // The fd's own entry in /proc names exactly the directory it holds open.
        let mut out = Vec::new();
        for entry in std::fs::read_dir(format!("/proc/self/fd/{}", listing.as_raw_fd()))? {
            let entry = entry?;
            let t = entry.file_type()?;
            let kind = if t.is_symlink() {
                Kind::Link
            } else if t.is_dir() {
                Kind::Dir
            } else if t.is_file() {
                Kind::File
            } else {
                Kind::Other
            };
            out.push((entry.file_name(), kind));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The target of the link `rel` (its last component is not followed).
    pub fn read_link(&self, rel: &Path) -> io::Result<PathBuf> {
        let (parent, name) = split(rel)?;
        let dir = self.dir(parent)?;
        let c = cstring(Path::new(name))?;
        let mut buf = vec![0u8; libc::PATH_MAX as usize];
        // SAFETY: readlinkat(2) into a buffer of the given length, relative to an fd we own.
        let n = unsafe {
            libc::readlinkat(
                dir.fd.as_raw_fd(),
                c.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(PathBuf::from(OsString::from_vec(buf)))
    }

    /// Whether `rel` is itself a symbolic link (not followed).
    pub fn is_link(&self, rel: &Path) -> io::Result<bool> {
        let (parent, name) = split(rel)?;
        let dir = self.dir(parent)?;
        let fd = dir.openat2(Path::new(name), libc::O_PATH | libc::O_NOFOLLOW, 0)?;
        Ok(File::from(fd).metadata()?.file_type().is_symlink())
    }

    fn openat2(&self, rel: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let c = cstring(rel)?;
        // SAFETY: open_how is plain data; zero is its documented default for every field.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (flags | libc::O_CLOEXEC) as u64;
        how.mode = if flags & libc::O_CREAT != 0 {
            u64::from(mode)
        } else {
            0
        };
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
        // A rename elsewhere during the walk makes the kernel answer EAGAIN: try again, briefly.
        for _ in 0..16 {
            // SAFETY: openat2(2) with an fd we own, a valid C string and a filled open_how of
            // the size passed.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                    &how as *const libc::open_how,
                    std::mem::size_of::<libc::open_how>(),
                )
            };
            if r >= 0 {
                // SAFETY: a fresh fd nobody else owns.
                return Ok(unsafe { OwnedFd::from_raw_fd(r as i32) });
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
                Some(libc::EXDEV) => return Err(outside(rel)),
                Some(libc::ENOSYS) => {
                    return Err(io::Error::other(
                        "this kernel lacks openat2 (Linux 5.6 or later is needed to open \
                         controller files safely)",
                    ));
                }
                _ => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "{} kept changing while it was opened",
            rel.display()
        )))
    }
}

/// Why a path was refused: it leads out of its directory (`..`, an absolute link, a link out).
#[derive(Debug)]
struct Outside(PathBuf);

impl std::fmt::Display for Outside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} leads outside the directory it must stay in (through '..' or a symbolic link)",
            self.0.display()
        )
    }
}

impl std::error::Error for Outside {}

fn outside(rel: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, Outside(rel.to_path_buf()))
}

/// Whether `e` is the refusal of a path leading out of its directory (not another error,
/// such as a missing file or a permission the user lacks).
pub fn is_outside(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Outside>())
}

fn split(rel: &Path) -> io::Result<(&Path, &std::ffi::OsStr)> {
    match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", rel.display()),
        )),
    }
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} contains a NUL byte", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_and_dots_out_of_the_directory_are_refused_and_nothing_is_made_outside() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(top.path().join("secret"), "s").unwrap();
        std::fs::write(root.join("ok"), "fine").unwrap();
        symlink("../", root.join("up")).unwrap();
        symlink(top.path().join("secret"), root.join("abs")).unwrap();
        symlink("ok", root.join("inside")).unwrap();
        let dir = Dir::open(&root).unwrap();
        assert_eq!(dir.read(Path::new("ok")).unwrap(), b"fine");
        assert_eq!(dir.read(Path::new("inside")).unwrap(), b"fine");
        for bad in ["../secret", "up/secret", "abs"] {
            let e = dir.read(Path::new(bad)).unwrap_err();
            assert!(
                is_outside(&e) && e.to_string().contains("leads outside"),
                "{bad}: {e}"
            );
        }
        assert!(!is_outside(&dir.read(Path::new("missing")).unwrap_err()));
        // The escape: parents created through a link out of the directory.
        assert!(dir.create_dir_all(Path::new("up/made/deeper")).is_err());
        assert!(!top.path().join("made").exists());
        assert!(dir.write(Path::new("up/written"), b"x").is_err());
        assert!(!top.path().join("written").exists());
        dir.create_dir_all(Path::new("a/b")).unwrap();
        dir.write(Path::new("a/b/c"), b"data").unwrap();
        assert_eq!(std::fs::read(root.join("a/b/c")).unwrap(), b"data");
        assert!(dir.is_link(Path::new("up")).unwrap());
        assert_eq!(dir.read_link(Path::new("inside")).unwrap(), Path::new("ok"));
        let names: Vec<_> = dir
            .entries()
            .unwrap()
            .into_iter()
            .map(|(n, k)| (n.to_string_lossy().into_owned(), k))
            .collect();
        assert!(names.contains(&("a".into(), Kind::Dir)));
        assert!(names.contains(&("up".into(), Kind::Link)));
        assert!(names.contains(&("ok".into(), Kind::File)));
    }
}
