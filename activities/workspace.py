"""Git workspaces: a worktree per job on branch `gigafactory/<jobId>`, from a bare mirror.

A factory keeps one bare mirror per repository (`<mirrors>/<key>.git`, fetched before every
use) and makes each job's worktree from it, so jobs never share a checkout, even jobs that
share a lock and a repository. After a run the factory commits what the agent changed
(author `Gigafactory <gigafactory@localhost>`), keeps the diff against the base as an
artifact and, when the run was stopped, pushes the branch to the *work remote* (the
repository itself unless the factory names another), where the next attempt, on any factory
that reaches it, picks the branch up. Shipping pushes the branch to the *ship remote* and
may run a forge command (a pull request).

Every function here is synchronous (git subprocesses); the activities run them in a thread.
Mirror operations of one repository are serialised by a file lock, so concurrent jobs on a
factory do not race on the mirror's refs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BRANCH_PREFIX",
    "DIFF_ARTIFACT",
    "GIT_AUTHOR",
    "ShipOutcome",
    "Workspace",
    "WorkspaceError",
    "Workspaces",
    "branch_for",
]

logger = logging.getLogger(__name__)

BRANCH_PREFIX = "gigafactory/"
DIFF_ARTIFACT = "changes.diff"
GIT_AUTHOR = ("Gigafactory", "gigafactory@localhost")
# Files agents leave in a checkout that are theirs, not the job's work.
EXCLUDED = (".aider*",)
GIT_TIMEOUT_S = 600.0
WORKTREE_DIR = "repo"
LAST_USED = "last-used"


class WorkspaceError(Exception):
    """A workspace cannot be made or published; the message is the reason, for people."""


def branch_for(job_id: str) -> str:
    """The branch a job's work lives on."""
    return f"{BRANCH_PREFIX}{job_id}"


@dataclass(frozen=True)
class Workspace:
    """A job's worktree for one attempt."""

    repo: str
    branch: str
    path: Path
    mirror: Path
    base_commit: str
    start_commit: str

    def checkpoint(self, commit: str | None) -> dict[str, Any]:
        """What the next attempt needs to continue on the same branch."""
        return {
            "repo": self.repo,
            "branch": self.branch,
            "baseCommit": self.base_commit,
            "commit": commit or self.start_commit,
        }


@dataclass(frozen=True)
class ShipOutcome:
    """Where a shipped branch went."""

    branch: str
    commit: str
    remote: str
    output: str = ""
    url: str | None = None


class Workspaces:
    """The worktrees and mirrors of one factory."""

    def __init__(
        self,
        mirror_root: Path,
        workspace_root: Path,
        *,
        work_remote: str | None = None,
        ship_remote: str | None = None,
        forge_command: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Create the manager.

        Args:
            mirror_root: where bare mirrors live.
            workspace_root: jobs' folders (`<productId>/<jobId>/`); worktrees go in `repo/`.
            work_remote: where stopped runs' branches are pushed; None: the repository.
                `{name}` is replaced by the repository's name.
            ship_remote: where SHIP pushes; None: the repository. `{name}` as above.
            forge_command: run after the ship push (placeholders `{branch}`, `{base}`,
                `{title}`, `{repo}`, `{remote}`, each shell-quoted).
            env: the environment git runs with (default: this process's).
        """
        self.mirror_root = mirror_root.resolve()
        self.workspace_root = workspace_root.resolve()
        self.work_remote = work_remote
        self.ship_remote = ship_remote
        self.forge_command = forge_command
        base_env = dict(os.environ if env is None else env)
        base_env.update(
            {
                "GIT_TERMINAL_PROMPT": "0",
                "GIT_AUTHOR_NAME": GIT_AUTHOR[0],
                "GIT_AUTHOR_EMAIL": GIT_AUTHOR[1],
                "GIT_COMMITTER_NAME": GIT_AUTHOR[0],
                "GIT_COMMITTER_EMAIL": GIT_AUTHOR[1],
                "LC_ALL": "C",
            }
        )
        self.env = base_env

    # --- paths --------------------------------------------------------------------------------
    def normalise(self, repo: str) -> str:
        """A local repository as an absolute path; a URL as given."""
        if "://" in repo or re.match(r"^[\w.-]+@[\w.-]+:", repo):
            return repo
        return str(Path(repo).expanduser().resolve())

    def mirror_for(self, repo: str) -> Path:
        url = self.normalise(repo)
        name = _repo_name(url)
        digest = hashlib.sha256(url.encode()).hexdigest()[:12]
        return self.mirror_root / f"{name}-{digest}.git"

    def worktree_for(self, product_id: str, job_id: str) -> Path:
        return self.workspace_root / product_id / job_id / WORKTREE_DIR

    def remote_url(self, template: str | None, repo: str) -> str:
        url = self.normalise(repo)
        return url if not template else template.replace("{name}", _repo_name(url))

    # --- git ----------------------------------------------------------------------------------
    def git(
        self, *args: str, cwd: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """Run git; with `check`, a failure is a WorkspaceError with git's last words."""
        done = subprocess.run(
            ["git", "-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null", *args],
            cwd=cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
        if check and done.returncode != 0:
            raise WorkspaceError(_last_words(done))
        return done

    def _out(self, *args: str, cwd: Path | None = None) -> str:
        return self.git(*args, cwd=cwd).stdout.decode().strip()

    def _sha(self, mirror: Path, ref: str) -> str | None:
        done = self.git(
            "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=mirror, check=False
        )
        return done.stdout.decode().strip() or None if done.returncode == 0 else None

    @contextlib.contextmanager
    def _locked(self, mirror: Path) -> Iterator[None]:
        mirror.parent.mkdir(parents=True, exist_ok=True)
        with open(mirror.with_suffix(".lock"), "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _fetch_mirror(self, repo: str) -> Path:
        """The repository's mirror, created or fetched (call with the mirror's lock held)."""
        url = self.normalise(repo)
        mirror = self.mirror_for(repo)
        fresh = not (mirror / "HEAD").exists()
        try:
            if fresh:
                self.git("init", "--quiet", "--bare", str(mirror))
                self.git("remote", "add", "origin", url, cwd=mirror)
                exclude = mirror / "info" / "exclude"
                exclude.parent.mkdir(parents=True, exist_ok=True)
                exclude.write_text("".join(f"{pattern}\n" for pattern in EXCLUDED))
            self.git(
                "fetch",
                "--quiet",
                "--prune",
                "origin",
                "+refs/heads/*:refs/remotes/origin/*",
                "+refs/tags/*:refs/tags/*",
                cwd=mirror,
            )
        except (WorkspaceError, subprocess.TimeoutExpired) as err:
            if fresh:
                shutil.rmtree(mirror, ignore_errors=True)
            raise WorkspaceError(f"repository {repo} cannot be reached: {err}") from None
        return mirror

    def _remote_branch(self, mirror: Path, repo: str, url: str, branch: str) -> str | None:
        """The sha of `branch` on the remote `url` (fetched into the mirror), or None."""
        if url == self.normalise(repo):
            return self._sha(mirror, f"refs/remotes/origin/{branch}")
        done = self.git("ls-remote", url, f"refs/heads/{branch}", cwd=mirror, check=False)
        if done.returncode != 0:
            raise WorkspaceError(f"work remote {url} cannot be reached: {_last_words(done)}")
        if not done.stdout.strip():
            return None
        tracking = f"refs/remotes/work/{branch}"
        self.git("fetch", "--quiet", url, f"+refs/heads/{branch}:{tracking}", cwd=mirror)
        return self._sha(mirror, tracking)

    def _default_branch(self, mirror: Path, repo: str) -> str:
        done = self.git("ls-remote", "--symref", "origin", "HEAD", cwd=mirror, check=False)
        for line in done.stdout.decode().splitlines():
            if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
                return line[len("ref: refs/heads/") : -len("\tHEAD")]
        branches = self._out(
            "for-each-ref", "--format=%(refname)", "refs/remotes/origin/", cwd=mirror
        )
        names = [b.removeprefix("refs/remotes/origin/") for b in branches.splitlines()]
        for name in ("main", "master"):
            if name in names:
                return name
        if names:
            return names[0]
        raise WorkspaceError(f"repository {repo} has no branch to start from")

    def _resolve_base(self, mirror: Path, repo: str, base_ref: str | None) -> str:
        ref = base_ref or self._default_branch(mirror, repo)
        for candidate in (f"refs/remotes/origin/{ref}", f"refs/tags/{ref}", ref):
            sha = self._sha(mirror, candidate)
            if sha is not None:
                return sha
        raise WorkspaceError(f"base ref {ref} does not exist in repository {repo}")

    # --- the job's worktree -------------------------------------------------------------------
    def prepare(
        self,
        *,
        job_id: str,
        product_id: str,
        repo: str,
        base_ref: str | None,
        checkpoint: Mapping[str, Any] | None,
    ) -> Workspace:
        """Make the job's worktree on `gigafactory/<jobId>` for one attempt.

        A first attempt starts the branch at the base ref. A later one (its checkpoint names
        the branch's last commit) continues from the branch on the work remote, or from this
        factory's own copy of it.

        Raises:
            WorkspaceError: the repository or the work remote cannot be reached, the base ref
                does not exist, the branch already exists although no attempt made it, or
                the last attempt's work cannot be found; nothing is left behind.
        """
        branch = branch_for(job_id)
        path = self.worktree_for(product_id, job_id)
        earlier = dict(checkpoint or {})
        resumed_commit = earlier.get("commit") if earlier.get("branch") == branch else None
        mirror = self.mirror_for(repo)
        with self._locked(mirror):
            self._fetch_mirror(repo)
            work_url = self.remote_url(self.work_remote, repo)
            remote_sha = self._remote_branch(mirror, repo, work_url, branch)
            local_sha = self._sha(mirror, f"refs/heads/{branch}")
            if isinstance(resumed_commit, str):
                base = str(earlier.get("baseCommit") or self._resolve_base(mirror, repo, base_ref))
                start = self._continue_from(mirror, branch, resumed_commit, remote_sha, local_sha)
                if start is None:
                    raise WorkspaceError(
                        f"the last attempt's work (commit {resumed_commit[:12]} on {branch}) is "
                        f"neither on {work_url} nor on this factory"
                    )
            else:
                if remote_sha is not None:
                    raise WorkspaceError(
                        f"branch {branch} already exists on {work_url} (at {remote_sha[:12]}) "
                        "but no attempt of this job made it: delete the branch or submit the "
                        "job under another id"
                    )
                base = self._resolve_base(mirror, repo, base_ref)
                start = base
            self._drop_worktree(mirror, path)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.git("worktree", "add", "--quiet", "-B", branch, str(path), start, cwd=mirror)
            except WorkspaceError as err:
                self._drop_worktree(mirror, path)
                if local_sha is None:
                    self.git("branch", "-D", branch, cwd=mirror, check=False)
                raise WorkspaceError(f"cannot make the worktree for {branch}: {err}") from None
        self.touch(path)
        logger.info("job %s: worktree %s on %s at %s", job_id, path, branch, start[:12])
        return Workspace(self.normalise(repo), branch, path, mirror, base, start)

    def _continue_from(
        self,
        mirror: Path,
        branch: str,
        commit: str,
        remote_sha: str | None,
        local_sha: str | None,
    ) -> str | None:
        """The newest of the remote and local branch that holds `commit`, or `commit`."""
        for candidate in (remote_sha, local_sha):
            if candidate and self._contains(mirror, candidate, commit):
                return candidate
        return commit if self._sha(mirror, commit) else None

    def _contains(self, mirror: Path, tip: str, commit: str) -> bool:
        done = self.git("merge-base", "--is-ancestor", commit, tip, cwd=mirror, check=False)
        return done.returncode == 0

    def _drop_worktree(self, mirror: Path, path: Path) -> None:
        if path.exists():
            self.git("worktree", "remove", "--force", str(path), cwd=mirror, check=False)
            shutil.rmtree(path, ignore_errors=True)
        self.git("worktree", "prune", cwd=mirror, check=False)

    def commit(self, ws: Workspace, message: str) -> str:
        """Commit everything the agent changed (new files included); returns HEAD's sha."""
        self.git("add", "--all", cwd=ws.path)
        staged = self.git("diff", "--cached", "--quiet", cwd=ws.path, check=False)
        if staged.returncode == 1:
            self.git("commit", "--quiet", "--no-verify", "-m", message, cwd=ws.path)
        return self._out("rev-parse", "HEAD", cwd=ws.path)

    def diff(self, ws: Workspace) -> bytes:
        """The branch's changes against the job's base, as a patch."""
        return self.git("diff", "--binary", ws.base_commit, "HEAD", cwd=ws.path).stdout

    def push_work(self, ws: Workspace) -> str:
        """Push the branch to the work remote (forced: the branch is the job's own)."""
        url = self.remote_url(self.work_remote, ws.repo)
        with self._locked(ws.mirror):
            self._push(ws.mirror, url, ws.branch, force=True)
        return url

    def _push(self, mirror: Path, url: str, branch: str, *, force: bool) -> None:
        spec = f"{'+' if force else ''}refs/heads/{branch}:refs/heads/{branch}"
        done = self.git("push", "--quiet", "--no-verify", url, spec, cwd=mirror, check=False)
        if done.returncode != 0:
            raise WorkspaceError(f"push of {branch} to {url} was refused: {_last_words(done)}")

    def touch(self, path: Path) -> None:
        """Mark the job's workspace as used now (retention counts from here)."""
        marker = path.parent / ".gigafactory" / LAST_USED
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{time.time()}\n")

    # --- ship and removal ---------------------------------------------------------------------
    def ship(self, *, job_id: str, repo: str, commit: str | None, title: str | None) -> ShipOutcome:
        """Push `gigafactory/<jobId>` to the ship remote, then run the forge command, if any.

        Idempotent: shipping the same commit again pushes nothing new and does not run the
        forge command a second time (its first output is returned).

        Raises:
            WorkspaceError: the branch is unknown, or the push or the forge command failed.
        """
        branch = branch_for(job_id)
        mirror = self.mirror_for(repo)
        url = self.remote_url(self.ship_remote, repo)
        with self._locked(mirror):
            self._fetch_mirror(repo)
            sha = self._ship_commit(mirror, repo, branch, commit)
            if sha is None:
                missing = f"commit {commit[:12]} of " if commit else ""
                raise WorkspaceError(
                    f"{missing}branch {branch} is neither on this factory nor on the work remote"
                )
            self.git("update-ref", f"refs/heads/{branch}", sha, cwd=mirror)
            record = mirror / "gigafactory-shipped" / f"{job_id}.json"
            shipped = _read_json(record)
            if shipped.get("commit") == sha and shipped.get("remote") == url:
                return ShipOutcome(branch, sha, url, shipped.get("output", ""), shipped.get("url"))
            self._push(mirror, url, branch, force=False)
            output = ""
            if self.forge_command:
                output = self._forge(mirror, repo, url, branch, title or f"gigafactory: {job_id}")
            found = re.findall(r"https?://\S+", output)
            outcome = ShipOutcome(branch, sha, url, output, found[-1] if found else None)
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps(outcome.__dict__))
        logger.info("job %s: shipped %s at %s to %s", job_id, branch, sha[:12], url)
        return outcome

    def _ship_commit(self, mirror: Path, repo: str, branch: str, commit: str | None) -> str | None:
        """The commit to ship: `commit`, else the branch's tip; fetched from the work remote
        when this factory does not have it (the job ran elsewhere)."""
        if commit and self._sha(mirror, commit):
            return commit
        local = None if commit else self._sha(mirror, f"refs/heads/{branch}")
        if local is not None:
            return local
        work_url = self.remote_url(self.work_remote, repo)
        remote = self._remote_branch(mirror, repo, work_url, branch)
        if commit:
            return commit if self._sha(mirror, commit) else None
        return remote

    def _forge(self, mirror: Path, repo: str, remote: str, branch: str, title: str) -> str:
        assert self.forge_command is not None
        values = {
            "branch": branch,
            "base": self._default_branch(mirror, repo),
            "title": title,
            "repo": self.normalise(repo),
            "remote": remote,
        }
        command = self.forge_command
        for key, value in values.items():
            command = command.replace("{" + key + "}", shlex.quote(value))
        done = subprocess.run(
            command,
            shell=True,
            cwd=mirror,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
        text = (done.stdout + done.stderr).decode(errors="replace").strip()
        if done.returncode != 0:
            raise WorkspaceError(f"forge command failed (exit code {done.returncode}): {text}")
        return text

    def remove(self, *, job_id: str, product_id: str, repo: str | None) -> bool:
        """Remove a job's worktree and its local branch; False when there was none."""
        path = self.worktree_for(product_id, job_id)
        mirror = self.mirror_for(repo) if repo else _mirror_of(path)
        existed = path.exists()
        if mirror is not None and (mirror / "HEAD").exists():
            with self._locked(mirror):
                self._drop_worktree(mirror, path)
                self.git("branch", "-D", branch_for(job_id), cwd=mirror, check=False)
        shutil.rmtree(path, ignore_errors=True)
        if existed:
            logger.info("job %s: worktree %s removed", job_id, path)
        return existed

    def expired(self, retention_s: float, now: float | None = None) -> list[tuple[str, str]]:
        """(productId, jobId) of worktrees unused for longer than `retention_s`."""
        now = time.time() if now is None else now
        found: list[tuple[str, str]] = []
        for path in sorted(self.workspace_root.glob(f"*/*/{WORKTREE_DIR}")):
            marker = path.parent / ".gigafactory" / LAST_USED
            try:
                used = float(marker.read_text().strip())
            except (OSError, ValueError):
                used = path.stat().st_mtime
            if now - used > retention_s:
                found.append((path.parent.parent.name, path.parent.name))
        return found


def _repo_name(url: str) -> str:
    name = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "repo"


def _mirror_of(worktree: Path) -> Path | None:
    """The bare repository a worktree belongs to (from its `.git` file)."""
    try:
        text = (worktree / ".git").read_text().strip()
    except OSError:
        return None
    if not text.startswith("gitdir: "):
        return None
    gitdir = Path(text.removeprefix("gitdir: "))
    # <mirror>/worktrees/<name>
    return gitdir.parent.parent if gitdir.parent.name == "worktrees" else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _last_words(done: subprocess.CompletedProcess[bytes]) -> str:
    text = (done.stderr or done.stdout or b"").decode(errors="replace").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # What a remote's hook said ("remote: ...") is the reason a push was refused.
    said = [line for line in lines if line.startswith("remote:")][-5:]
    kept = said + [line for line in lines[-3:] if line not in said]
    return " / ".join(kept) if kept else f"git exited with code {done.returncode}"
