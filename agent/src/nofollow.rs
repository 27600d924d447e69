//! Putting a file in place without ever following a symlink: the parent directory is opened one
//! component at a time with `O_NOFOLLOW`, and the temp file is renamed into that open directory.
//! A directory swapped for a symlink at any moment (even between a check and the rename) makes
//! the open fail instead of sending the file wherever the link points.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{CWD, Mode, OFlags};
use rustix::io::Errno;

use crate::error::AgentError;

/// Directories renamed into whose renames are not yet durable: [`Renamed::make_durable`]
/// fsyncs each once (a group of files installed into one directory costs one fsync, not one
/// per file).
#[derive(Default)]
pub struct Renamed(HashMap<String, OwnedFd>);

impl Renamed {
    /// Makes every rename so far durable.
    pub fn make_durable(self) -> Result<(), AgentError> {
        for (dir, fd) in self.0 {
            rustix::fs::fsync(&fd)
                .map_err(|e| AgentError::io("fsync", Path::new(&dir), e.into()))?;
        }
        Ok(())
    }

    /// Keeps `parent`, the directory holding `relative`, to be made durable (once per
    /// directory).
    fn keep(&mut self, relative: &str, parent: OwnedFd) {
        let dir = relative.rsplit_once('/').map_or("", |(dir, _)| dir);
        self.0.entry(dir.to_owned()).or_insert(parent);
    }
}

/// Renames the file at `from` to `relative` inside `root`, through parents opened without
/// following symlinks. The rename is durable once `renamed` is made durable.
pub fn rename_into(
    root: &Path,
    from: &Path,
    relative: &str,
    renamed: &mut Renamed,
) -> Result<(), AgentError> {
    let (parent, name) = open_parent(root, relative, false)?;
    rustix::fs::renameat(CWD, from, &parent, name)
        .map_err(|e| AgentError::io("rename", &root.join(relative), e.into()))?;
    renamed.keep(relative, parent);
    Ok(())
}

/// Moves `from` to `to` (both relative to `root`) within the folder, both parents opened
/// without following symlinks; missing parents of `to` are created the same way. Nothing is
/// moved out of or into a directory reached through a symlink. Durable once `renamed` is.
pub fn move_within(
    root: &Path,
    from: &str,
    to: &str,
    renamed: &mut Renamed,
) -> Result<(), AgentError> {
    let (source, from_name) = open_parent(root, from, false)?;
    let (target, to_name) = open_parent(root, to, true)?;
    rustix::fs::renameat(&source, from_name, &target, to_name)
        .map_err(|e| AgentError::io("move", &root.join(from), e.into()))?;
    renamed.keep(from, source);
    renamed.keep(to, target);
    Ok(())
}

/// Moves `relative` (inside `root`) to `trash` (a path in the agent's own state directory),
/// through a parent opened without following symlinks.
pub fn move_out(root: &Path, relative: &str, trash: &Path) -> Result<(), AgentError> {
    let (parent, name) = open_parent(root, relative, false)?;
    rustix::fs::renameat(&parent, name, CWD, trash)
        .map_err(|e| AgentError::io("move to trash", &root.join(relative), e.into()))
}

/// The directory that holds `relative`, and the last component's name; with `create`, missing
/// directories on the way are made (each inside the one opened before it).
fn open_parent<'a>(
    root: &Path,
    relative: &'a str,
    create: bool,
) -> Result<(OwnedFd, &'a str), AgentError> {
    let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
    let refuse = |errno: Errno| match errno {
        // A symlink or a file where a directory should be.
        Errno::LOOP | Errno::NOTDIR => AgentError::UnsafePath(relative.to_owned()),
        Errno::NOENT => AgentError::ParentChanged(relative.to_owned()),
        other => AgentError::io("open", &root.join(relative), other.into()),
    };
    let (dirs, name) = relative
        .rsplit_once('/')
        .map_or(("", relative), |(dirs, name)| (dirs, name));
    let mut dir = rustix::fs::open(root, flags, Mode::empty()).map_err(refuse)?;
    for component in dirs.split('/').filter(|c| !c.is_empty()) {
        if component == "." || component == ".." {
            return Err(AgentError::UnsafePath(relative.to_owned()));
        }
        let next = match rustix::fs::openat(&dir, component, flags, Mode::empty()) {
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&dir, component, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(errno) => return Err(refuse(errno)),
                }
                rustix::fs::openat(&dir, component, flags, Mode::empty())
            }
            other => other,
        };
        dir = next.map_err(refuse)?;
    }
    Ok((dir, name))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A folder `root` holding `dir` and `link` (a symlink to the directory `outside`).
    fn fixture(dir: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root.join(dir)).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        (tmp, root, outside)
    }

    #[test]
    fn a_file_goes_into_a_real_directory_and_never_through_a_symlink() {
        let (tmp, root, outside) = fixture("real/sub");
        std::fs::write(root.join("plain"), "a file").unwrap();
        let temp = |n: &str| {
            let path = tmp.path().join(n);
            std::fs::write(&path, n).unwrap();
            path
        };
        let mut renamed = Renamed::default();

        rename_into(&root, &temp("one"), "real/sub/one.txt", &mut renamed).unwrap();
        assert_eq!(
            std::fs::read(root.join("real/sub/one.txt")).unwrap(),
            b"one"
        );
        rename_into(&root, &temp("top"), "top.txt", &mut renamed).unwrap();
        assert_eq!(std::fs::read(root.join("top.txt")).unwrap(), b"top");

        for (name, path) in [("two", "link/two.txt"), ("three", "plain/three.txt")] {
            assert!(matches!(
                rename_into(&root, &temp(name), path, &mut renamed),
                Err(AgentError::UnsafePath(_))
            ));
        }
        assert!(matches!(
            rename_into(&root, &temp("four"), "gone/four.txt", &mut renamed),
            Err(AgentError::ParentChanged(_))
        ));
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert_eq!(renamed.0.len(), 2, "one directory handle per parent");
        renamed.make_durable().unwrap();
    }

    #[test]
    fn moves_stay_inside_the_folder() {
        let (tmp, root, outside) = fixture("a");
        std::fs::write(outside.join("secret"), "outside").unwrap();
        std::fs::write(root.join("a/f"), "mine").unwrap();
        let mut renamed = Renamed::default();

        move_within(&root, "a/f", "new/deep/g", &mut renamed).unwrap();
        assert_eq!(std::fs::read(root.join("new/deep/g")).unwrap(), b"mine");
        assert!(!root.join("a/f").exists());
        renamed.make_durable().unwrap();

        let mut renamed = Renamed::default();
        for (from, to) in [("new/deep/g", "link/g"), ("link/secret", "stolen")] {
            assert!(matches!(
                move_within(&root, from, to, &mut renamed),
                Err(AgentError::UnsafePath(_))
            ));
        }
        assert!(matches!(
            move_within(&root, "new/deep/g", "link/made/g", &mut renamed),
            Err(AgentError::UnsafePath(_))
        ));
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
        assert!(!root.join("stolen").exists());

        let trash = tmp.path().join("trash-g");
        move_out(&root, "new/deep/g", &trash).unwrap();
        assert_eq!(std::fs::read(&trash).unwrap(), b"mine");
        assert!(matches!(
            move_out(&root, "link/secret", &tmp.path().join("trash-s")),
            Err(AgentError::UnsafePath(_))
        ));
        assert!(outside.join("secret").exists());
    }
}
