"""Download SimCSE's data files from the Hugging Face dataset ``princeton-nlp/datasets-for-simcse``.

The transfer is huggingface_hub's ``hf_hub_download`` (the Hub's cache, ``$HF_ENDPOINT`` or ``--endpoint``
mirrors, ``HF_HUB_OFFLINE``; an interrupted transfer is resumed within the call, the size is checked). A
quick metadata request first makes an unreachable Hub fail in seconds, and gives the sha256 the downloaded
file is checked against. The file is then copied from the Hub's cache into the data directory through a
temporary sibling, so that the data directory is self-contained and its files appear only complete.
``senteval.tar`` is checked for unsafe members, extracted into a temporary sibling folder and renamed into
place.

Layout of a data directory::

    $DIR/senteval/downstream/...          senteval.tar extracted into $DIR/senteval/
    $DIR/wiki/wiki1m_for_simcse.txt
    $DIR/nli/nli_for_simcse.csv
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import sys
import tarfile
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from simcse.core.errors import MissingDataError, SimCSEError
from simcse.core.files import atomic_path, sha256_file
from simcse.data.hub import (
    HubUnreachableError,
    describe_error,
    hub_errors,
    is_offline,
    one_line,
    quiet_hub,
    resolve_endpoint,
)

DATASET_REPO = "princeton-nlp/datasets-for-simcse"
DATASET_REVISION = "main"
PROBE_TIMEOUT_S = 10.0  # the metadata request made before each download
DATA_DIR_ENV = "SIMCSE_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/simcse/data"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class RemoteDataset:
    """A data set's file on the Hub and where it goes in the data directory."""

    remote_name: str  # file name on the server
    local_path: str  # path inside the data directory, POSIX separators
    is_tar: bool  # extracted into the parent of local_path; its top-level folder is local_path's name


DATASETS: dict[str, RemoteDataset] = {
    "senteval": RemoteDataset("senteval.tar", "senteval/downstream", is_tar=True),
    "wiki1m": RemoteDataset("wiki1m_for_simcse.txt", "wiki/wiki1m_for_simcse.txt", is_tar=False),
    "nli": RemoteDataset("nli_for_simcse.csv", "nli/nli_for_simcse.csv", is_tar=False),
}


# ----------------------------------------------------------------------------------------------------------
# Paths and names


def _spec(name: str) -> RemoteDataset:
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(DATASETS)
        raise SimCSEError(f"unknown dataset {name!r}; known datasets: {known}") from None


def _default_data_dir() -> Path:
    return Path(DEFAULT_DATA_DIR).expanduser()


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: ``data_dir`` if given, else ``$SIMCSE_DATA_DIR``, else ``~/.cache/simcse/data``.

    ``~`` is expanded; the directory is not created.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV, "")
    if from_env:
        return Path(from_env).expanduser()
    return _default_data_dir()


def dataset_path(name: str, data_dir: str | Path | None = None) -> Path:
    """Where dataset ``name`` lives locally (for senteval: the ``.../senteval/downstream`` folder)."""
    return resolve_data_dir(data_dir) / PurePosixPath(_spec(name).local_path)


def dataset_url(name: str, endpoint: str | None = None) -> str:
    """The Hub URL of dataset ``name``'s file: on ``endpoint`` if given, else ``$HF_ENDPOINT``, else
    https://huggingface.co (see :func:`simcse.data.hub.resolve_endpoint`)."""
    remote = urllib.parse.quote(_spec(name).remote_name)
    return f"{resolve_endpoint(endpoint)}/datasets/{DATASET_REPO}/resolve/{DATASET_REVISION}/{remote}"


def fetch_command(name: str, data_dir: Path | None = None) -> str:
    """The shell command that downloads dataset ``name``, e.g. ``simcse data download senteval --dir /x``."""
    _spec(name)
    command = f"simcse data download {name}"
    if data_dir is not None:
        command += f" --dir {shlex.quote(str(data_dir))}"
    return command


# ----------------------------------------------------------------------------------------------------------
# Tar extraction


def _is_inside(path: PurePosixPath) -> bool:
    """True if a relative POSIX path stays inside its root once ``..`` parts are applied."""
    depth = 0
    for part in path.parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part not in ("", "."):
            depth += 1
    return True


def _unsafe_reason(member: tarfile.TarInfo) -> str | None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or re.match(r"^[A-Za-z]:", member.name) or not _is_inside(name):
        return "its path leaves the extraction folder"
    if ".." in name.parts:
        return "its path contains '..'"
    if member.issym():
        link = PurePosixPath(member.linkname)
        if link.is_absolute() or not _is_inside(name.parent / link):
            return f"it is a link pointing outside the archive ({member.linkname})"
    elif member.islnk():
        link = PurePosixPath(member.linkname)
        if link.is_absolute() or not _is_inside(link):
            return f"it is a link pointing outside the archive ({member.linkname})"
    elif not (member.isfile() or member.isdir()):
        return "it is a device, fifo or other special file"
    return None


def _check_members(tar: tarfile.TarFile, tar_path: Path) -> None:
    links: set[PurePosixPath] = set()
    for member in tar.getmembers():
        reason = _unsafe_reason(member)
        name = PurePosixPath(member.name)
        if reason is None and any(parent in links for parent in name.parents):
            # a chain of links (up -> .., up/up2 -> ..) escapes even when each link looks local
            reason = (
                "its path goes through a link of the archive, which may point outside the extraction folder"
            )
        if member.issym() or member.islnk():
            links.add(name)
        if reason is not None:
            raise SimCSEError(f"{tar_path}: refusing to extract member {member.name!r}: {reason}")


def _write_error(path: Path, err: OSError) -> SimCSEError:
    reason = err.strerror or str(err)
    return SimCSEError(f"cannot write {path}: {reason}; choose another data directory with --dir")


def _extract_tar(tar_path: Path, final: Path) -> None:
    """Extract ``tar_path`` into ``final.parent`` so that its top-level ``final.name`` folder becomes ``final``.

    Extraction happens in a temporary sibling folder that is renamed into place, so ``final`` only ever
    appears complete. The tar itself is left alone (it is the Hub cache's copy).
    """
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-extract-", dir=final.parent))
    except OSError as err:
        raise _write_error(final.parent, err) from None
    try:
        try:
            with tarfile.open(tar_path) as tar:
                _check_members(tar, tar_path)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: a second line of defence
                    tar.extractall(tmp, filter="data")
                else:
                    tar.extractall(tmp)
        except getattr(tarfile, "FilterError", ()) as err:  # the "data" filter's refusal
            raise SimCSEError(f"{tar_path}: refusing to extract member: {err}") from None
        except (tarfile.TarError, EOFError) as err:
            raise SimCSEError(
                f"{tar_path}: not a valid tar archive ({err}); download it again with --force"
            ) from None
        except OSError as err:
            raise _write_error(tmp, err) from None
        extracted = tmp / final.name
        if not extracted.is_dir():
            found = ", ".join(sorted(p.name for p in tmp.iterdir())) or "nothing"
            raise SimCSEError(f"{tar_path}: expected a top-level '{final.name}/' folder, found: {found}")
        _replace_dir(extracted, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_dir(source: Path, final: Path) -> None:
    """Rename ``source`` to ``final``; an existing ``final`` (``--force``) is moved aside first."""
    old = None
    try:
        if final.exists():
            old = final.with_name(f".{final.name}-old-{os.getpid()}")
            os.replace(final, old)
        os.replace(source, final)
    except OSError as err:
        raise _write_error(final, err) from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _copy_into_place(source: Path, final: Path) -> None:
    """Copy ``source`` (the Hub cache's file) to ``final`` through a temporary sibling, renamed when complete."""
    try:
        with atomic_path(final) as tmp:
            shutil.copyfile(source, tmp)
    except OSError as err:
        raise _write_error(final.parent, err) from None


# ----------------------------------------------------------------------------------------------------------
# From the Hub


def _check_sha256(path: Path, etag: str | None, what: str) -> None:
    """Compare the file with the sha256 the Hub announced (the ETag of an LFS file; a small file kept in
    git has a git-sha1 ETag instead, and only its size is checked, by huggingface_hub). A corrupt copy is
    deleted from the Hub's cache so that the next run downloads it again."""
    expected = (etag or "").strip('"').lower()
    if not _SHA256_RE.match(expected):
        return
    actual = sha256_file(path)
    if actual != expected:
        with contextlib.suppress(OSError):
            path.resolve().unlink(missing_ok=True)  # the blob
            path.unlink(missing_ok=True)  # the snapshot's link to it
        raise SimCSEError(
            f"{what} failed verification: sha256 {actual} but the Hub says {expected}; the corrupt copy was "
            "deleted from the Hugging Face cache, run the command again"
        )


def _from_hub(name: str, endpoint: str, force: bool, announce: str | None = None) -> Path:
    """Dataset ``name``'s file in the Hub's cache: downloaded unless cached there (``force``: again), and
    checked. Without a connection (or with ``HF_HUB_OFFLINE``) a cached copy is used, else
    HubUnreachableError. ``announce``: a line to print once the Hub has answered and the transfer starts."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download
    from huggingface_hub.utils import HfHubHTTPError

    filename = _spec(name).remote_name
    what = f"download of {filename} from {endpoint}"
    hub_file = dict(repo_id=DATASET_REPO, repo_type="dataset", filename=filename, revision=DATASET_REVISION)
    try:
        # One request without retries: an unreachable Hub fails in seconds instead of after
        # hf_hub_download's retries, and the answer has the sha256 to check the download against.
        meta = get_hf_file_metadata(dataset_url(name, endpoint), timeout=PROBE_TIMEOUT_S)
    except HfHubHTTPError as err:
        raise SimCSEError(f"{what} failed: {describe_error(err)}") from None
    except hub_errors() as err:  # no connection, or offline mode: a copy in the Hub's cache will do
        offline = is_offline(err)
        reason = describe_error(err) if offline else f"{endpoint} is unreachable ({one_line(str(err))})"
        if force:
            raise HubUnreachableError(
                f"cannot download {filename} again", f"{reason}; --force needs the Hub"
            ) from None
        try:
            return Path(hf_hub_download(**hub_file, endpoint=endpoint, local_files_only=True))
        except hub_errors():  # LocalEntryNotFoundError
            raise HubUnreachableError(
                f"cannot download {filename}", f"{reason}, and the Hugging Face cache has no copy"
            ) from None
    if meta.commit_hash is None or meta.etag is None:
        raise SimCSEError(
            f"{what} failed: the answer has no X-Repo-Commit or ETag header, so {endpoint} is not a Hugging "
            "Face Hub (or a proxy strips them); check --endpoint / $HF_ENDPOINT"
        )
    if announce:
        size = f" ({meta.size / 1e6:.1f} MB)" if meta.size else ""
        print(f"{announce}{size}", file=sys.stderr)
    try:
        path = Path(hf_hub_download(**hub_file, endpoint=endpoint, force_download=force))
    except hub_errors() as err:  # HTTP errors, a cut connection after the retries, a size mismatch
        raise SimCSEError(f"{what} failed: {describe_error(err)}") from None
    _check_sha256(path, meta.etag, what)
    return path


# ----------------------------------------------------------------------------------------------------------
# Public entry points


def download_dataset(
    name: str,
    data_dir: str | Path | None = None,
    endpoint: str | None = None,
    progress: bool = True,
    force: bool = False,
    announce: bool = False,
) -> Path:
    """Download dataset ``name`` into the data directory unless present (``force``: download it again);
    returns its path. ``endpoint``: a mirror of the Hub (default ``$HF_ENDPOINT``, else huggingface.co)."""
    spec = _spec(name)
    final = dataset_path(name, data_dir)
    if final.exists() and not force:
        return final
    base = resolve_endpoint(endpoint)
    line = (
        f"simcse: downloading {name} ({spec.remote_name}) from {base} into {final.parent}"
        if announce
        else None
    )
    with quiet_hub(progress):
        cached = _from_hub(name, base, force, line)
    if spec.is_tar:
        _extract_tar(cached, final)
    else:
        _copy_into_place(cached, final)
    return final


def ensure_dataset(
    name: str,
    data_dir: str | Path | None = None,
    download: bool = True,
    endpoint: str | None = None,
    rows: int = 0,
) -> Path:
    """The local path of dataset ``name``, downloading it if absent, ``download`` is true and the Hub is
    reachable (saying so on stderr); otherwise raises MissingDataError naming the expected path and the
    fetch command. With ``rows`` (only the first rows will be read), a sample of the file's first lines
    beside it (``wiki1m_for_simcse.head11914.txt``: :func:`head_sample`) does when it has enough of them."""
    path = dataset_path(name, data_dir)
    if path.exists():
        return path
    sample = head_sample(path, rows) if rows else None
    if sample is not None:
        return sample
    root = resolve_data_dir(data_dir)
    command = fetch_command(name, None if root == _default_data_dir() else root)
    if not download:
        raise MissingDataError(path, command)
    try:
        found = download_dataset(name, data_dir, endpoint=endpoint, announce=True)
    except HubUnreachableError as err:
        raise MissingDataError(path, command, reason=f"not found and {err.reason}") from None
    except SimCSEError as err:
        raise MissingDataError(path, command, reason=f"not found and the download failed ({err})") from None
    print(f"simcse: downloaded {name} to {found}", file=sys.stderr)
    return found


HEAD_SAMPLE = re.compile(r"\.head(\d+)$")  # STEM.headN.SUFFIX: the first N lines of STEM.SUFFIX


def head_sample(path: Path, rows: int) -> Path | None:
    """The smallest file beside ``path`` named ``STEM.headN.SUFFIX`` with ``N >= rows``: the published
    file's first N lines, which give the same first ``rows`` rows (None when there is none)."""
    if not path.parent.is_dir():
        return None
    found = []
    for candidate in path.parent.glob(f"{path.stem}.head*{path.suffix}"):
        match = HEAD_SAMPLE.search(candidate.name[: len(candidate.name) - len(path.suffix)])
        if match and int(match.group(1)) >= rows and candidate.is_file():
            found.append((int(match.group(1)), candidate))
    return min(found)[1] if found else None


def main_download(
    names: list[str], data_dir: str | None, endpoint: str | None = None, force: bool = False
) -> int:
    """``simcse data download NAME... [--dir DIR] [--endpoint URL] [--force]``: prints where each dataset
    is; returns the exit code: 0 when all are present, 2 when a name is unknown or a download failed (the
    others are still fetched). Errors are ``simcse: error: ...`` lines, as from every command."""
    wanted = list(DATASETS) if "all" in names else list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in DATASETS]
    if unknown or not wanted:
        known = ", ".join([*DATASETS, "all"])
        print(
            f"simcse: error: unknown dataset {', '.join(map(repr, unknown)) or '(none given)'}; choose from: {known}",
            file=sys.stderr,
        )
        return 2
    try:
        resolve_endpoint(endpoint)  # a malformed --endpoint is one error, not one per dataset
    except SimCSEError as err:
        print(f"simcse: error: {err}", file=sys.stderr)
        return 2
    status = 0
    for name in wanted:
        present = dataset_path(name, data_dir).exists() and not force
        try:
            path = download_dataset(name, data_dir, endpoint=endpoint, force=force)
        except SimCSEError as err:
            print(f"simcse: error: {name}: {' '.join(str(err).split())}", file=sys.stderr)
            status = 2
            continue
        print(f"{name}: {path}" + (" (already present)" if present else ""))
    return status
