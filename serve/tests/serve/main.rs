//! `infer serve` end to end: the binary on port 0, exercised over loopback
//! with a small HTTP/1.1 client written here, so that hostile requests
//! (cut short, trickled, oversized) can be sent byte by byte. The server's
//! answers are held to `infer classify`'s, run from the same target
//! folder. One test binary, so the ONNX Runtime library loads once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ae_core::idx::{self, Images};

use ae_onnx::fixture::{fixture_model, node};
use infer::npy::read_f32;

mod hostile;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

/// The server's binary, which `infer serve` runs.
fn server_binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_infer-serve"))
}

/// Runs `infer ARGS` as a user types it and returns (exit code, stdout,
/// stderr): `serve …` on this crate's binary, the other commands on the
/// `infer` built beside it (`cargo test --workspace` builds both).
fn infer_cmd(args: &[&str]) -> (i32, String, String) {
    let mut command = match args.split_first() {
        Some((&"serve", rest)) => {
            let mut c = server_binary();
            c.args(rest);
            c
        }
        _ => {
            let infer = Path::new(env!("CARGO_BIN_EXE_infer-serve")).with_file_name("infer");
            assert!(infer.is_file(), "{} is not built: cargo build --release -p infer", infer.display());
            let mut c = Command::new(infer);
            c.args(args);
            c
        }
    };
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `infer serve`; killed when dropped.
struct Server {
    child: Child,
    http: String,
    /// Also exercised by tests/triton_client.py (Triton's own client).
    grpc: String,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(models: &Path, extra: &[&str]) -> Server {
        Server::start_env(models, extra, &[])
    }

    /// With environment variables (`INFER_FAULT`).
    fn start_env(models: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tmp();
        let stderr = dir.path().join("stderr.log");
        let mut child = server_binary()
            .args(["--models", &models.display().to_string(), "--http-port", "0", "--grpc-port", "0"])
            .args(["--threads", "1", "--io-threads", "2"])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = |scheme: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(scheme))
                .unwrap_or_else(|| {
                    panic!(
                        "no {scheme} address in the first line {line:?}: {}",
                        std::fs::read_to_string(&stderr).unwrap()
                    )
                })
                .to_string()
        };
        let (http, grpc) = (addr("http://"), addr("grpc://"));
        Server { child, http, grpc, stderr, _dir: dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap()
    }

    /// SIGTERM, then the exit code (within `limit`).
    fn terminate(&mut self, limit: Duration) -> i32 {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            assert!(t0.elapsed() < limit, "server did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response: status, headers (lower-case names), body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    /// The `{"error": …}` line of an error reply.
    fn error(&self) -> String {
        let v = self.json();
        let e = v["error"].as_str().unwrap_or_else(|| panic!("no error field: {v}")).to_string();
        assert!(!e.contains('\n'), "one line: {e}");
        e
    }
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

fn read_reply(s: &mut TcpStream) -> std::io::Result<Reply> {
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before a response"));
    }
    let status = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("a status line");
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').expect("a header");
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").map(|(_, v)| v.parse().unwrap()).unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(Reply { status, headers, body })
}

/// One request on a fresh connection.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Reply {
    let mut s = connect(addr);
    send(&mut s, method, path, headers, body).unwrap();
    read_reply(&mut s).unwrap()
}

fn send(s: &mut TcpStream, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> std::io::Result<()> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += "\r\n";
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes)
}

fn get(addr: &str, path: &str) -> Reply {
    request(addr, "GET", path, &[], b"")
}

/// MNIST test images `[n, 1, 28, 28]` in [0, 1] and as an IDX file.
fn mnist_images(dir: &Path, n: usize) -> (Vec<f32>, PathBuf) {
    let all = idx::read_images(root().join("data/mnist/t10k-images-idx3-ubyte")).unwrap();
    let pixels = all.pixels[..n * 784].to_vec();
    let path = dir.join("images-idx3-ubyte");
    idx::write_images(&path, &Images { count: n, channels: 1, rows: 28, cols: 28, pixels: pixels.clone() }, false)
        .unwrap();
    (pixels.iter().map(|&p| p as f32 / 255.0).collect(), path)
}

fn json_infer(images: &[f32], n: usize, outputs: &[&str]) -> Vec<u8> {
    let mut doc = serde_json::json!({
        "id": "r1",
        "inputs": [{"name": "image", "shape": [n, 1, 28, 28], "datatype": "FP32", "data": images}],
    });
    if !outputs.is_empty() {
        doc["outputs"] = outputs.iter().map(|o| serde_json::json!({"name": o})).collect();
    }
    serde_json::to_vec(&doc).unwrap()
}

/// A binary-extension request: (headers, body).
fn binary_infer(images: &[f32], n: usize, output: &str) -> (Vec<(&'static str, String)>, Vec<u8>) {
    let header = serde_json::to_vec(&serde_json::json!({
        "inputs": [{"name": "image", "shape": [n, 1, 28, 28], "datatype": "FP32",
                    "parameters": {"binary_data_size": images.len() * 4}}],
        "outputs": [{"name": output, "parameters": {"binary_data": true}}],
    }))
    .unwrap();
    let mut body = header.clone();
    body.extend(images.iter().flat_map(|v| v.to_le_bytes()));
    (vec![("inference-header-content-length", header.len().to_string())], body)
}

/// The rows of a JSON infer reply's output.
fn json_rows(reply: &Reply, output: &str) -> Vec<f32> {
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let v = reply.json();
    let o = v["outputs"].as_array().unwrap().iter().find(|o| o["name"] == output).unwrap();
    o["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn binary_rows(reply: &Reply) -> Vec<f32> {
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let split: usize = reply.header("inference-header-content-length").unwrap().parse().unwrap();
    let head: serde_json::Value = serde_json::from_slice(&reply.body[..split]).unwrap();
    let size = head["outputs"][0]["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
    assert_eq!(reply.body.len() - split, size);
    reply.body[split..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(name)).map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap()).sum()
}

#[test]
fn serve_answers_every_endpoint_as_infer_classify_does() {
    let dir = tmp();
    let (images, idx_path) = mnist_images(dir.path(), 24);
    let npy = dir.path().join("p.npy");
    let (code, _, err) = infer_cmd(&[
        "classify",
        "--model",
        &root().join("models/classifier.onnx").display().to_string(),
        "--images",
        &idx_path.display().to_string(),
        "--probabilities",
        &npy.display().to_string(),
        "--threads",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, expected) = read_f32(&npy).unwrap();

    let server = Server::start(&root().join("models"), &[]);
    let a = server.http.as_str();
    assert_eq!(get(a, "/v2/health/live").json()["live"], true);
    assert_eq!(get(a, "/v2/health/ready").json()["ready"], true);
    let meta = get(a, "/v2").json();
    assert_eq!(
        meta["extensions"],
        serde_json::json!([
            "binary_tensor_data",
            "classification",
            "model_configuration",
            "model_repository",
            "model_repository(unload_dependents)"
        ])
    );
    let m = get(a, "/v2/models/classifier").json();
    assert_eq!(m["inputs"][0], serde_json::json!({"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}));
    assert_eq!(m["outputs"][0]["shape"], serde_json::json!([-1, 10]));
    assert_eq!(get(a, "/v2/models/classifier/versions/1").json(), m);
    assert_eq!(get(a, "/v2/models/classifier.int8/ready").json()["ready"], true);
    let c = get(a, "/v2/models/classifier/config").json();
    assert_eq!(
        (c["max_batch_size"].as_i64(), c["input"][0]["dims"].clone()),
        (Some(64), serde_json::json!([1, 28, 28]))
    );

    // The whole batch in one request, JSON then binary; then one request per image.
    let path = "/v2/models/classifier/infer";
    let json = request(a, "POST", path, &[], &json_infer(&images, 24, &["probabilities"]));
    assert_eq!(json.json()["id"], "r1");
    assert_eq!(bits(&json_rows(&json, "probabilities")), bits(&expected), "JSON rows differ from infer classify");
    let (h, body) = binary_infer(&images, 24, "probabilities");
    let binary = request(a, "POST", "/v2/models/classifier/versions/1/infer", &h, &body);
    assert_eq!(binary.header("content-type"), Some("application/octet-stream"));
    assert_eq!(bits(&binary_rows(&binary)), bits(&expected), "binary rows differ from infer classify");
    for i in [0, 7, 23] {
        let one = request(a, "POST", path, &[], &json_infer(&images[i * 784..(i + 1) * 784], 1, &[]));
        assert_eq!(bits(&json_rows(&one, "probabilities")), bits(&expected[i * 10..(i + 1) * 10]), "image {i}");
    }

    // Nested data (an image as [1][1][28][28]) and binary_data_output for every output.
    let nested: Vec<Vec<Vec<Vec<f32>>>> =
        vec![vec![images[..784].chunks(28).map(|row| row.to_vec()).collect::<Vec<_>>()]];
    let doc = serde_json::json!({
        "parameters": {"binary_data_output": true},
        "inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": nested}],
    });
    let r = request(a, "POST", path, &[], &serde_json::to_vec(&doc).unwrap());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let split: usize = r.header("inference-header-content-length").unwrap().parse().unwrap();
    let head: serde_json::Value = serde_json::from_slice(&r.body[..split]).unwrap();
    let names: Vec<&str> = head["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["probabilities", "logits"]);
    let first: Vec<f32> =
        r.body[split..split + 40].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(bits(&first), bits(&expected[..10]), "nested JSON input, binary output");

    // The picture endpoint: the same file gives infer classify's numbers.
    let png = dir.path().join("digit.png");
    let digit = image::GrayImage::from_fn(40, 36, |x, y| {
        let on = (14..26).contains(&x) && (6..30).contains(&y) && (x < 17 || !(9..=27).contains(&y));
        image::Luma([if on { 20 } else { 235 }])
    });
    digit.save(&png).unwrap();
    let pnpy = dir.path().join("pic.npy");
    let (code, _, err) = infer_cmd(&[
        "classify",
        "--model",
        &root().join("models/classifier.onnx").display().to_string(),
        "--images",
        &png.display().to_string(),
        "--preprocess",
        "mnist",
        "--probabilities",
        &pnpy.display().to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, want) = read_f32(&pnpy).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    let pic =
        request(a, "POST", "/classify/classifier?preprocess=mnist", &[("content-type", "image/png".into())], &bytes);
    assert_eq!(pic.status, 200, "{}", String::from_utf8_lossy(&pic.body));
    let v = pic.json();
    let got: Vec<f32> = v["probabilities"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert_eq!(bits(&got), bits(&want), "picture endpoint differs from infer classify --preprocess mnist");
    let best = want.iter().enumerate().fold(0, |b, (i, p)| if *p > want[b] { i } else { b });
    assert_eq!((v["class"].as_u64(), v["name"].as_str()), (Some(best as u64), Some(best.to_string().as_str())));
    // The same file as a multipart form.
    let boundary = "XbOuNdArY";
    let mut form = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"digit.png\"\r\ncontent-type: image/png\r\n\r\n"
    )
    .into_bytes();
    form.extend_from_slice(&bytes);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={boundary}");
    let pic2 = request(a, "POST", "/classify/classifier?preprocess=mnist", &[("content-type", ct)], &form);
    assert_eq!(pic2.json()["probabilities"], v["probabilities"]);

    // Metrics name what happened; the access log has a line per request.
    let m = String::from_utf8(get(a, "/metrics").body).unwrap();
    assert!(
        m.contains("infer_requests_total{model=\"classifier\",protocol=\"http\",status=\"200\",version=\"1\"}"),
        "{m}"
    );
    for name in
        ["infer_request_duration_seconds_bucket", "infer_queue_duration_seconds_bucket", "infer_batch_size_bucket"]
    {
        assert!(m.contains(name), "{name} missing: {m}");
    }
    assert!(m.contains("infer_requests_in_flight") && m.contains("infer_queue_depth"), "{m}");
    assert_eq!(
        metric(&m, "infer_batch_size_sum{model=\"classifier\",version=\"1\"}"),
        24.0 * 2.0 + 3.0 + 1.0 + 1.0 + 1.0
    );
    assert!(server.log().contains("POST /v2/models/classifier/infer 200"), "{}", server.log());
}

#[test]
fn concurrent_clients_each_get_their_own_rows() {
    let dir = tmp();
    let (images, _) = mnist_images(dir.path(), 64);
    let server = Server::start(&root().join("models"), &["--log", "warn", "--max-batch", "32"]);
    let a = server.http.clone();
    // Reference rows: each image alone.
    let alone: Vec<Vec<f32>> = (0..64)
        .map(|i| {
            json_rows(
                &request(
                    &a,
                    "POST",
                    "/v2/models/classifier/infer",
                    &[],
                    &json_infer(&images[i * 784..(i + 1) * 784], 1, &[]),
                ),
                "probabilities",
            )
        })
        .collect();
    let images = Arc::new(images);
    let alone = Arc::new(alone);
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let (a, images, alone) = (a.clone(), images.clone(), alone.clone());
            std::thread::spawn(move || {
                let mut s = connect(&a);
                for r in 0..25 {
                    // Batch sizes 1 to 4, starting at different images per client and request.
                    let n = 1 + (t + r) % 4;
                    let first = (t * 7 + r * 5) % (64 - n);
                    let x = &images[first * 784..(first + n) * 784];
                    let binary = (t + r) % 2 == 0;
                    let rows = if binary {
                        let (h, body) = binary_infer(x, n, "probabilities");
                        send(&mut s, "POST", "/v2/models/classifier/infer", &h, &body).unwrap();
                        binary_rows(&read_reply(&mut s).unwrap())
                    } else {
                        send(&mut s, "POST", "/v2/models/classifier/infer", &[], &json_infer(x, n, &[])).unwrap();
                        json_rows(&read_reply(&mut s).unwrap(), "probabilities")
                    };
                    let want: Vec<f32> = (first..first + n).flat_map(|i| alone[i].clone()).collect();
                    assert_eq!(bits(&rows), bits(&want), "client {t} request {r}: rows not its own");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let m = String::from_utf8(get(&a, "/metrics").body).unwrap();
    let (sum, count) = (
        metric(&m, "infer_batch_size_sum{model=\"classifier\",version=\"1\"}"),
        metric(&m, "infer_batch_size_count{model=\"classifier\",version=\"1\"}"),
    );
    // Requests were merged: fewer runs than requests.
    assert!(count < 64.0 + 400.0, "no batching across requests: {count} runs for 464 requests");
    assert!(sum / count > 1.2, "mean batch {}", sum / count);
}

#[test]
fn a_full_queue_answers_503_at_once() {
    let dir = tmp();
    let (images, _) = mnist_images(dir.path(), 64);
    let server = Server::start(&root().join("models"), &["--log", "warn", "--max-queue", "1", "--max-batch", "64"]);
    let body = Arc::new(json_infer(&images, 64, &[]));
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..12)
        .map(|_| {
            let (a, body, statuses) = (server.http.clone(), body.clone(), statuses.clone());
            std::thread::spawn(move || {
                for _ in 0..4 {
                    let t0 = Instant::now();
                    let r = request(&a, "POST", "/v2/models/autoencoder/infer", &[], &body);
                    let e = if r.status == 200 { String::new() } else { r.error() };
                    statuses.lock().unwrap().push((r.status, e, t0.elapsed()));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let statuses = statuses.lock().unwrap();
    let full: Vec<_> = statuses.iter().filter(|(s, _, _)| *s == 503).collect();
    assert!(!full.is_empty(), "no 503 from a queue of 1 under 12 clients: {statuses:?}");
    assert!(statuses.iter().all(|(s, _, _)| *s == 200 || *s == 503), "{statuses:?}");
    assert!(full.iter().all(|(_, e, _)| e.contains("queue full")), "{full:?}");
    assert!(statuses.iter().any(|(s, _, _)| *s == 200));
    // At once: a refusal waits for no batch, so it comes faster than the
    // typical answer, and within a second whatever the machine.
    let median = |status: u16| {
        let mut t: Vec<Duration> = statuses.iter().filter(|(s, _, _)| *s == status).map(|(_, _, t)| *t).collect();
        t.sort();
        t[t.len() / 2]
    };
    let slowest = full.iter().map(|(_, _, t)| *t).max().unwrap();
    assert!(slowest < Duration::from_secs(1), "a 503 took {slowest:?}");
    assert!(median(503) < median(200), "503s took {:?}, 200s {:?}", median(503), median(200));
}

#[test]
fn sigterm_under_load_answers_every_accepted_request_then_exits_0() {
    let dir = tmp();
    let (images, _) = mnist_images(dir.path(), 64);
    let mut server = Server::start(&root().join("models"), &["--max-batch", "64", "--drain-timeout", "20"]);
    let body = Arc::new(json_infer(&images, 64, &[]));
    let ok = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..12)
        .map(|_| {
            let (a, body, ok, stop) = (server.http.clone(), body.clone(), ok.clone(), stop.clone());
            std::thread::spawn(move || {
                // One request per connection: a refused or reset connection
                // is one the server never accepted; an accepted one must be
                // answered in full.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Ok(mut s) = TcpStream::connect(&a) else { break };
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    if send(&mut s, "POST", "/v2/models/autoencoder/infer", &[], &body).is_err() {
                        break;
                    }
                    match read_reply(&mut s) {
                        Ok(r) => {
                            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                            assert_eq!(r.json()["outputs"][0]["data"].as_array().unwrap().len(), 64 * 784);
                            *ok.lock().unwrap() += 1;
                        }
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let code = server.terminate(Duration::from_secs(25));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(code, 0, "{}", server.log());
    let log = server.log();
    let answered = log.lines().filter(|l| l.contains("POST /v2/models/autoencoder/infer 200")).count();
    assert_eq!(answered, *ok.lock().unwrap(), "the server answered requests no client received: {log}");
    let drained = log.lines().skip_while(|l| !l.contains("SIGTERM: draining")).filter(|l| l.contains(" 200 ")).count();
    assert!(
        drained > 0,
        "no request was answered after SIGTERM: in-flight requests were cut off, or none was in flight: {log}"
    );
    assert!(log.contains("drained: every accepted request answered"), "{log}");
}

/// Each hostile request gets its status and a one-line error, and the
/// server keeps serving; the lines are kept as a snapshot.
#[test]
fn hostile_requests_get_one_line_errors() {
    let dir = tmp();
    let (images, _) = mnist_images(dir.path(), 2);
    let server = Server::start(
        &root().join("models"),
        &["--api-key", "s3cret", "--max-body", "256K", "--read-timeout", "2", "--log", "warn"],
    );
    let a = server.http.as_str();
    let key = ("authorization", "Bearer s3cret".to_string());
    let infer_path = "/v2/models/classifier/infer";
    let one = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
    let input = |name: &str, datatype: &str, shape: serde_json::Value, data: serde_json::Value| {
        one(serde_json::json!({"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]}))
    };
    let x: Vec<f32> = images[..784].to_vec();
    let mut lines = Vec::new();
    let mut check = |case: &str, reply: Reply, status: u16| {
        assert_eq!(reply.status, status, "{case}: {}", String::from_utf8_lossy(&reply.body));
        lines.push(format!("{case}: {status} {}", reply.error()));
        // Still serving.
        let ok = request(a, "POST", infer_path, std::slice::from_ref(&key), &json_infer(&x, 1, &[]));
        assert_eq!(ok.status, 200, "after {case}");
    };
    let post = |path: &str, headers: &[(&str, String)], body: &[u8]| {
        let mut h = vec![key.clone()];
        h.extend(headers.iter().cloned());
        request(a, "POST", path, &h, body)
    };
    check("invalid JSON", post(infer_path, &[], b"{\"inputs\": [}"), 400);
    check(
        "wrong datatype",
        post(
            infer_path,
            &[],
            &input("image", "INT32", serde_json::json!([1, 1, 28, 28]), serde_json::json!(vec![0; 784])),
        ),
        400,
    );
    let mut more = x.clone();
    more.push(0.5);
    check(
        "more values than the shape",
        post(infer_path, &[], &input("image", "FP32", serde_json::json!([1, 1, 28, 28]), serde_json::json!(more))),
        400,
    );
    check(
        "shape and count disagree",
        post(infer_path, &[], &input("image", "FP32", serde_json::json!([2, 1, 28, 28]), serde_json::json!(x))),
        400,
    );
    check(
        "wrong image shape",
        post(infer_path, &[], &input("image", "FP32", serde_json::json!([1, 28, 28]), serde_json::json!(x))),
        400,
    );
    check(
        "unknown input",
        post(infer_path, &[], &input("pixels", "FP32", serde_json::json!([1, 1, 28, 28]), serde_json::json!(x))),
        400,
    );
    check("unknown output", post(infer_path, &[], &json_infer(&x, 1, &["scores"])), 400);
    check("unknown model", post("/v2/models/resnet/infer", &[], &json_infer(&x, 1, &[])), 404);
    check("unknown version", post("/v2/models/classifier/versions/7/infer", &[], &json_infer(&x, 1, &[])), 404);
    let (mut h, mut body) = binary_infer(&x, 1, "probabilities");
    body.truncate(body.len() - 4);
    check("binary size mismatch", post(infer_path, &h, &body), 400);
    let mut nan = x.clone();
    nan[100] = f32::NAN;
    let (h2, body2) = binary_infer(&nan, 1, "probabilities");
    check("NaN in the input", post(infer_path, &h2, &body2), 400);
    let mut big = serde_json::json!(x);
    big[5] = serde_json::json!(1e39);
    check(
        "Inf in the input",
        post(infer_path, &[], &input("image", "FP32", serde_json::json!([1, 1, 28, 28]), big)),
        400,
    );
    check(
        "negative shape",
        post(infer_path, &[], &input("image", "FP32", serde_json::json!([-1, 1, 28, 28]), serde_json::json!(x))),
        400,
    );
    check(
        "huge shape",
        post(
            infer_path,
            &[],
            &input("image", "FP32", serde_json::json!([1_000_000_000_000i64, 1, 28, 28]), serde_json::json!([])),
        ),
        400,
    );
    check(
        "over max batch",
        post(infer_path, &[], &input("image", "FP32", serde_json::json!([65, 1, 28, 28]), serde_json::json!([]))),
        400,
    );
    let with = |extra: serde_json::Value| {
        let mut v: serde_json::Value = serde_json::from_slice(&json_infer(&x, 1, &["probabilities"])).unwrap();
        for (k, e) in extra.as_object().unwrap() {
            let (place, key) = k.split_once('.').unwrap();
            let target = match place {
                "request" => &mut v,
                "input" => &mut v["inputs"][0],
                _ => &mut v["outputs"][0],
            };
            target["parameters"][key] = e.clone();
        }
        serde_json::to_vec(&v).unwrap()
    };
    check(
        "unknown request parameter",
        post(infer_path, &[], &with(serde_json::json!({"request.sequence_id": 1}))),
        400,
    );
    check("unknown input parameter", post(infer_path, &[], &with(serde_json::json!({"input.shm_region": "a"}))), 400);
    check("unknown output parameter", post(infer_path, &[], &with(serde_json::json!({"output.top_k": 3}))), 400);
    check("classification 0", post(infer_path, &[], &with(serde_json::json!({"output.classification": 0}))), 400);
    let top = post(infer_path, &[], &with(serde_json::json!({"output.classification": 2})));
    assert_eq!(top.status, 200, "{}", String::from_utf8_lossy(&top.body));
    let out = &top.json()["outputs"][0];
    assert_eq!((out["datatype"].as_str(), out["shape"].clone()), (Some("BYTES"), serde_json::json!([1, 2])), "{out}");
    assert_eq!(out["data"].as_array().unwrap().len(), 2, "{out}");
    assert!(out["data"][0].as_str().unwrap().split(':').count() == 3, "value:index:label: {out}");
    // Compressed bodies (tritonclient's request_compression_algorithm):
    // the same rows as plain JSON; inflated within --max-body.
    let plain = json_infer(&x, 1, &[]);
    let want = json_rows(&post(infer_path, &[], &plain), "probabilities");
    let gzip = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zlib.write_all(&plain).unwrap();
    let encoded = |e: &str| vec![("content-encoding", e.to_string())];
    for (encoding, body) in [("gzip", gzip(&plain)), ("deflate", zlib.finish().unwrap())] {
        let r = post(infer_path, &encoded(encoding), &body);
        assert_eq!(r.status, 200, "{encoding}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(bits(&json_rows(&r, "probabilities")), bits(&want), "{encoding}");
    }
    check("unknown content encoding", post(infer_path, &encoded("br"), &plain), 415);
    check("corrupt gzip", post(infer_path, &encoded("gzip"), &gzip(&plain)[..40]), 400);
    check("gzip bomb over the limit", post(infer_path, &encoded("gzip"), &gzip(&vec![b' '; 300 * 1024])), 413);
    h[0].1 = "x".into();
    check("bad header length", post(infer_path, &h, &body), 400);
    check("body over the limit", post(infer_path, &[], &vec![b' '; 300 * 1024]), 413);
    check("not a picture", post("/classify/classifier?preprocess=mnist", &[], b"GIF89a"), 400);
    check("picture to an autoencoder", post("/classify/autoencoder", &[], b""), 400);
    check("bad preprocess", post("/classify/classifier?preprocess=blur", &[], b""), 400);
    check("missing key", request(a, "POST", infer_path, &[], &json_infer(&x, 1, &[])), 401);
    check(
        "wrong key",
        request(a, "GET", "/v2/models/classifier", &[("authorization", "Bearer guess".into())], b""),
        401,
    );
    check("no such endpoint", request(a, "GET", "/v3", std::slice::from_ref(&key), b""), 404);
    check("path not UTF-8", request(a, "GET", "/v2/models/%FF%FE", std::slice::from_ref(&key), b""), 400);

    // A body cut short: the client stops sending and closes its side.
    let mut s = connect(a);
    let head = format!("POST {infer_path} HTTP/1.1\r\nhost: t\r\nauthorization: Bearer s3cret\r\ncontent-length: 5000\r\n\r\n{{\"inputs\"");
    s.write_all(head.as_bytes()).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    check("truncated body", read_reply(&mut s).unwrap(), 400);

    // One byte a second: the body's read timeout (2 s) answers 408.
    let mut s = connect(a);
    let t0 = Instant::now();
    let head =
        format!("POST {infer_path} HTTP/1.1\r\nhost: t\r\nauthorization: Bearer s3cret\r\ncontent-length: 100\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let slow = std::thread::spawn({
        let mut s = s.try_clone().unwrap();
        move || {
            for _ in 0..6 {
                if s.write_all(b" ").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    });
    let reply = read_reply(&mut s).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    check("one byte a second (body)", reply, 408);
    slow.join().unwrap();
    // Headers one byte a second: the connection is closed after the timeout.
    let mut s = connect(a);
    let t0 = Instant::now();
    let mut closed = false;
    for b in b"GET /v2/health/live HTTP/1.1\r\n" {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 1];
        s.set_read_timeout(Some(Duration::from_millis(900))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => panic!("answered a request it never finished receiving"),
            Err(_) => {}
        }
    }
    assert!(closed && t0.elapsed() < Duration::from_secs(6), "slow headers not cut off: {:?}", t0.elapsed());
    lines.push("one byte a second (headers): connection closed after --read-timeout".into());
    // Liveness needs no key.
    assert_eq!(get(a, "/v2/health/live").status, 200);
    insta::assert_snapshot!("serve_hostile_requests", lines.join("\n"));
}

/// A Triton repository: versions by policy, batching from the config, and
/// a config or model that does not fit refused at start with exit 2.
#[test]
fn triton_repository_versions_and_refusals() {
    let dir = tmp();
    let repo = dir.path().join("repo");
    let model = std::fs::read(root().join("models/classifier.onnx")).unwrap();
    for v in ["1", "3", "12"] {
        std::fs::create_dir_all(repo.join("digits").join(v)).unwrap();
        std::fs::write(repo.join("digits").join(v).join("model.onnx"), &model).unwrap();
    }
    let config = |extra: &str| {
        format!(
            "name: \"digits\"\nbackend: \"onnxruntime\"\nmax_batch_size: 8\n\
             input [ {{ name: \"image\" data_type: TYPE_FP32 dims: [ 1, 28, 28 ] }} ]\n\
             output [ {{ name: \"probabilities\" data_type: TYPE_FP32 dims: [ 10 ] }} ]\n\
             dynamic_batching {{ max_queue_delay_microseconds: 100 }}\n{extra}"
        )
    };
    std::fs::write(repo.join("digits/config.pbtxt"), config("version_policy: { specific: { versions: [1, 12] } }"))
        .unwrap();
    let (images, _) = mnist_images(dir.path(), 9);
    {
        let server = Server::start(&repo, &["--log", "warn"]);
        let a = server.http.as_str();
        let m = get(a, "/v2/models/digits").json();
        assert_eq!(m["versions"], serde_json::json!(["1", "12"]));
        assert_eq!(get(a, "/v2/models/digits/versions/3").status, 404);
        let c = get(a, "/v2/models/digits/versions/12/config").json();
        assert_eq!(c["dynamic_batching"]["max_queue_delay_microseconds"], 100);
        // The config's output list is what it says; the model's other output is still served.
        let r = request(a, "POST", "/v2/models/digits/versions/1/infer", &[], &json_infer(&images[..8 * 784], 8, &[]));
        assert_eq!(json_rows(&r, "probabilities").len(), 80);
        let r = request(a, "POST", "/v2/models/digits/infer", &[], &json_infer(&images, 9, &[]));
        assert_eq!(r.status, 400);
        assert!(r.error().contains("1 to 8"), "{}", r.error());
    }
    // Refusals at start: exit 2, one line naming the file.
    let refuse = |files: &[(&str, &[u8])]| {
        let bad = dir.path().join(format!("bad{}", files.len() + files[0].1.len()));
        for (f, bytes) in files {
            std::fs::create_dir_all(bad.join(f).parent().unwrap()).unwrap();
            std::fs::write(bad.join(f), bytes).unwrap();
        }
        let (code, _, err) =
            infer_cmd(&["serve", "--models", &bad.display().to_string(), "--http-port", "0", "--grpc-port", "0"]);
        assert_eq!(code, 2, "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        err.trim().replace(&bad.display().to_string(), "REPO")
    };
    let dims = config("").replace("digits", "m").replace("dims: [ 10 ]", "dims: [ 12 ]");
    let wrong_dims = refuse(&[("m/config.pbtxt", dims.as_bytes()), ("m/1/model.onnx", &model)]);
    assert!(wrong_dims.contains("REPO/m/config.pbtxt") && wrong_dims.contains("[12]"), "{wrong_dims}");
    let typo = refuse(&[("m/config.pbtxt", b"max_batch: 8\n"), ("m/1/model.onnx", &model)]);
    assert!(typo.contains("REPO/m/config.pbtxt") && typo.contains("max_batch"), "{typo}");
    let broken =
        refuse(&[("m/config.pbtxt", config("").replace("digits", "m").as_bytes()), ("m/1/model.onnx", b"not onnx")]);
    assert!(broken.contains("model m version 1 failed to load") && broken.contains("REPO/m/1/model.onnx"), "{broken}");
    let empty = refuse(&[("notes.txt", b"hello")]);
    assert!(empty.contains("no models"), "{empty}");
    let odd = b"max_batch_size: 8\nparameters { key: \"normalize\" value: { string_value: \"0.5\" } }\n";
    let normalize = refuse(&[("m/config.pbtxt", odd), ("m/1/model.onnx", &model)]);
    assert!(normalize.contains("REPO/m/config.pbtxt: parameter normalize"), "{normalize}");
    insta::assert_snapshot!("serve_start_refusals", [wrong_dims, typo, broken, empty, normalize].join("\n"));
}

/// A config's `normalize` parameter is what `/classify` applies to a
/// picture, as `infer classify --normalize` does; protocol requests carry
/// the model's own values.
#[test]
fn a_configs_normalize_parameter_is_what_classify_applies_to_pictures() {
    let dir = tmp();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("m/1")).unwrap();
    std::fs::write(repo.join("m/1/model.onnx"), fixture_model("classifier", 8, 8).to_bytes()).unwrap();
    std::fs::write(
        repo.join("m/config.pbtxt"),
        "max_batch_size: 8\nparameters { key: \"normalize\" value: { string_value: \"0.5,0.25\" } }\n",
    )
    .unwrap();
    let pixels: Vec<u8> = (0..64).map(|i| ((i * 53) % 256) as u8).collect();
    let png = dir.path().join("p.png");
    image::GrayImage::from_raw(8, 8, pixels).unwrap().save(&png).unwrap();
    let classify = |extra: &[&str]| {
        let npy = dir.path().join("p.npy");
        let model = repo.join("m/1/model.onnx").display().to_string();
        let png = png.display().to_string();
        let npy_arg = npy.display().to_string();
        let mut args = vec!["classify", "--model", &model, "--images", &png, "--preprocess", "exact", "--quiet"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--probabilities", &npy_arg]);
        let (code, _, err) = infer_cmd(&args);
        assert_eq!(code, 0, "{err}");
        read_f32(&npy).unwrap().1
    };
    let (normalized, plain) = (classify(&["--normalize", "0.5,0.25"]), classify(&[]));
    assert_ne!(bits(&normalized), bits(&plain), "the normalisation changes what the model sees");
    let server = Server::start(&repo, &["--log", "warn"]);
    let r = request(
        server.http.as_str(),
        "POST",
        "/classify/m?preprocess=exact",
        &[("content-type", "image/png".into())],
        &std::fs::read(&png).unwrap(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let p: Vec<f32> = serde_json::from_value(r.json()["probabilities"].clone()).unwrap();
    assert_eq!(bits(&p), bits(&normalized));
}

/// A request whose client has gone away is skipped before it runs: the
/// session never sees it, the next one is answered, and the metric counts it.
#[test]
fn a_request_whose_client_left_is_dropped_before_it_runs() {
    use infer::session::{ModelSession, SessionOptions};
    use serve::metrics::Metrics;
    use serve::model_config::Batching;
    use serve::queue::Queue;

    let opts = SessionOptions { device: infer::session::Device::Cpu, threads: Some(1), ..Default::default() };
    let session = ModelSession::open(root().join("models/autoencoder.onnx"), &opts).unwrap();
    let batching =
        Batching { max_batch: 64, across_requests: true, max_queue_delay: Duration::ZERO, max_queue: 8, instances: 1 };
    let metrics = Metrics::new(64);
    let queue = Queue::start("autoencoder", vec![session], &batching, &metrics.queue("autoencoder", "1"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        // The first keeps the session busy (64 images) while the second is
        // queued and abandoned, and a third waits behind it.
        let busy = queue.submit(vec![0.5; 64 * 784], 64).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let gone = queue.submit(vec![0.25; 64 * 784], 64).unwrap();
        drop(gone);
        let kept = queue.submit(vec![0.75; 784], 1).unwrap();
        assert_eq!(busy.await.unwrap().unwrap()[0].shape, vec![64, 1, 28, 28]);
        assert_eq!(kept.await.unwrap().unwrap()[0].shape, vec![1, 1, 28, 28]);
    });
    let text = metrics.render();
    assert_eq!(metric(&text, "infer_requests_dropped_total{model=\"autoencoder\",version=\"1\"}"), 1.0, "{text}");
    // The abandoned request's 64 images never ran: 64 + 1 images in all.
    assert_eq!(metric(&text, "infer_batch_size_sum{model=\"autoencoder\",version=\"1\"}"), 65.0, "{text}");
}

/// An HTTP/2 client connection to `addr`, driven on the current runtime,
/// once the server's SETTINGS are in.
async fn h2_client(addr: &str) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    client.ready().await.unwrap()
}

/// The headers of a ModelInfer call, with `Bearer KEY` if a key is given.
fn model_infer_call(key: Option<&str>) -> axum::http::Request<()> {
    let mut r = axum::http::Request::post("/inference.GRPCInferenceService/ModelInfer")
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(k) = key {
        r = r.header("authorization", format!("Bearer {k}"));
    }
    r.body(()).unwrap()
}

/// A call's grpc-status: in its headers (trailers-only: refused before the
/// body) or in the trailers after its body.
async fn grpc_status(response: axum::http::Response<h2::RecvStream>) -> String {
    if let Some(s) = response.headers().get("grpc-status") {
        return s.to_str().unwrap().to_string();
    }
    let mut body = response.into_body();
    while body.data().await.is_some() {}
    body.trailers().await.unwrap().unwrap()["grpc-status"].to_str().unwrap().to_string()
}

/// What HTTP/2 begins with, and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// Idle connections do not hold SIGTERM: with nothing in flight the server
/// exits 0 at once. gRPC ones that never finish the HTTP/2 handshake, or
/// finish it and then answer nothing (not even GOAWAY), used to keep it
/// draining for the whole --drain-timeout, then exit 1; REST ones that
/// sent nothing or half a request line held it for --read-timeout.
#[test]
fn idle_connections_do_not_hold_the_drain() {
    let mut server = Server::start(&root().join("models"), &["--drain-timeout", "20", "--log", "warn"]);
    let silent = TcpStream::connect(&server.grpc).unwrap();
    let mut half = TcpStream::connect(&server.grpc).unwrap();
    half.write_all(&H2_PREFACE[..10]).unwrap();
    let mut mute = TcpStream::connect(&server.grpc).unwrap();
    mute.write_all(H2_PREFACE).unwrap();
    let quiet = connect(&server.http);
    let mut kept_alive = connect(&server.http);
    send(&mut kept_alive, "GET", "/v2/health/live", &[], b"").unwrap();
    assert_eq!(read_reply(&mut kept_alive).unwrap().status, 200);
    let mut partial = connect(&server.http);
    partial.write_all(b"GET /v2/health/li").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let code = server.terminate(Duration::from_secs(15));
    let took = t0.elapsed();
    assert_eq!(code, 0, "{}", server.log());
    assert!(took < Duration::from_secs(3), "the drain took {took:?} with nothing in flight");
    drop((silent, half, mute, quiet, kept_alive, partial));
}

/// The gRPC face's limits on one HTTP/2 connection, with Triton's own
/// framing: the key is checked on a call's headers, before its message is
/// read (a call that declares 60 MB and sends none of it is refused at
/// once); --max-streams is what the server announces; a stream that never
/// sends its message is cut at the call deadline.
#[test]
fn grpc_limits_hold_before_a_message_is_read() {
    let server =
        Server::start(&root().join("models"), &["--api-key", "sesame", "--max-streams", "3", "--read-timeout", "1"]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = h2_client(&server.grpc).await;
        // A gRPC frame header: uncompressed, 60 MB to follow (never sent).
        let mut header = vec![0u8];
        header.extend_from_slice(&(60u32 << 20).to_be_bytes());
        for (key, expected, within) in [(None, "16", 2.0), (Some("wrong"), "16", 2.0), (Some("sesame"), "4", 8.0)] {
            let (response, mut body) = client.send_request(model_infer_call(key), false).unwrap();
            body.send_data(bytes::Bytes::from(header.clone()), false).unwrap();
            let t0 = Instant::now();
            let response = tokio::time::timeout(Duration::from_secs_f64(within), response)
                .await
                .unwrap_or_else(|_| panic!("key {key:?}: no answer within {within} s"))
                .unwrap();
            let status = grpc_status(response).await;
            assert_eq!(status, expected, "key {key:?}: grpc-status after {:?}", t0.elapsed());
            if key != Some("sesame") {
                assert!(t0.elapsed() < Duration::from_millis(500), "refused after {:?}", t0.elapsed());
            }
        }
        assert_eq!(client.current_max_send_streams(), 3, "SETTINGS_MAX_CONCURRENT_STREAMS");
    });
    let metrics = request(&server.http, "GET", "/metrics", &[("authorization", "Bearer sesame".to_string())], b"");
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert_eq!(
        metric(&text, r#"infer_requests_total{model="",protocol="grpc",status="Unauthenticated",version=""}"#),
        2.0,
        "{text}"
    );
    assert_eq!(metric(&text, "infer_requests_in_flight"), 1.0, "the scrape alone: {text}");
}

/// --max-connections counts both faces: with two gRPC connections open and
/// a limit of 2, one more gRPC connection is closed and an HTTP request
/// gets 503; closing one frees a slot for either.
#[test]
fn grpc_connections_count_against_the_connection_limit() {
    let server = Server::start(&root().join("models"), &["--max-connections", "2", "--log", "warn"]);
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(&server.grpc).unwrap();
            s.write_all(H2_PREFACE).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(&server.grpc).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = extra.write_all(H2_PREFACE);
    let mut buf = [0u8; 64];
    // Closed by the server: an end of stream or a reset, not a read that
    // timed out on a connection left open.
    match extra.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("a third gRPC connection was served ({n} bytes)"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "a third connection stayed open: {e}"),
    }
    assert_eq!(get(&server.http, "/v2/health/live").status, 503);
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(&server.http, "/v2/health/live").status, 200);
}

/// A PNG of `side`×`side` pixels: a dark disc on white.
fn big_png(w: u32, h: u32) -> Vec<u8> {
    let (cx, cy, r) = (w as f32 / 2.0, h as f32 / 2.0, w.min(h) as f32 / 3.0);
    let img = image::GrayImage::from_fn(w, h, |x, y| {
        let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
        image::Luma([if (d - r).abs() < r / 5.0 { 0 } else { 255 }])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Pictures decode on blocking threads, one at a time here: while eight at
/// the model's pixel cap (3584×3584 for 28×28 inputs) are decoded, liveness
/// answers in under a third of one picture's time (on the I/O threads it
/// waited for a decode to end), and all eight are answered; one pixel row more is
/// refused before decoding, naming the cap.
#[test]
fn big_pictures_decode_off_the_io_threads() {
    let server = Server::start(&root().join("models"), &["--decode-threads", "1", "--log", "warn"]);
    let a = server.http.clone();
    let path = "/classify/classifier?preprocess=mnist";
    let png = |w, h| (vec![("content-type", "image/png".to_string())], big_png(w, h));
    let (headers, over) = png(3584, 3585);
    let t0 = Instant::now();
    let r = request(&a, "POST", path, &headers, &over);
    assert_eq!(r.status, 400);
    assert!(r.error().contains("3584×3585 pixels, more than the 12845056 this model accepts"), "{}", r.error());
    assert!(t0.elapsed() < Duration::from_millis(500), "refused after {:?}", t0.elapsed());
    // Eight such bombs at once: every one refused, liveness answered meanwhile.
    let over = Arc::new(over);
    let bombs: Vec<_> = (0..8)
        .map(|_| {
            let (a, headers, over) = (a.clone(), headers.clone(), over.clone());
            std::thread::spawn(move || request(&a, "POST", path, &headers, &over).status)
        })
        .collect();
    let t = Instant::now();
    assert_eq!(get(&a, "/v2/health/live").status, 200);
    let live = t.elapsed();
    assert!(bombs.into_iter().all(|b| b.join().unwrap() == 400));
    assert!(live < Duration::from_millis(50), "liveness took {live:?} among 8 bombs");
    let (headers, body) = png(3584, 3584);
    // One alone: how long a decode holds whatever thread runs it.
    let t0 = Instant::now();
    assert_eq!(request(&a, "POST", path, &headers, &body).status, 200);
    let one = t0.elapsed();
    let body = Arc::new(body);
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let (a, headers, body, done) = (a.clone(), headers.clone(), body.clone(), done.clone());
            std::thread::spawn(move || {
                let r = request(&a, "POST", path, &headers, &body);
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                r
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut slowest = Duration::ZERO;
    let mut probes = 0;
    while done.load(std::sync::atomic::Ordering::SeqCst) < 8 {
        let t = Instant::now();
        assert_eq!(get(&a, "/v2/health/live").status, 200);
        slowest = slowest.max(t.elapsed());
        probes += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    for s in senders {
        let r = s.join().unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["class"], 0, "a ring is a zero");
    }
    assert!(
        slowest < (one / 3).min(Duration::from_millis(50)),
        "liveness took {slowest:?} while pictures decoded (one picture: {one:?})"
    );
    assert!(probes >= 5, "the pictures decoded too fast to probe liveness ({probes} probes)");
}

/// A client that pipelines requests and never reads the answers loses its
/// connection --idle-timeout after the server's writes stop moving, so
/// its slot under --max-connections serves others again (it used to hold
/// it for ever: only reading had a timer).
#[test]
fn a_client_that_never_reads_frees_its_connection() {
    let dir = tmp();
    let (images, _) = mnist_images(dir.path(), 64);
    let server = Server::start(
        &root().join("models"),
        &["--max-connections", "1", "--idle-timeout", "1", "--max-batch", "64", "--log", "warn"],
    );
    let a = server.http.clone();
    let body = json_infer(&images, 64, &[]);
    let mut hog = connect(&a);
    let mut writer = hog.try_clone().unwrap();
    // Answers of about 600 KB each, never read: the socket buffers fill.
    let sender = std::thread::spawn(move || {
        for _ in 0..80 {
            if send(&mut writer, "POST", "/v2/models/autoencoder/infer", &[], &body).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(&a, "/v2/health/live").status, 503, "the hog holds the only slot");
    let t0 = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        if get(&a, "/v2/health/live").status == 200 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "the slot was never freed");
    }
    sender.join().unwrap();
    // The hog's connection was closed by the server (an end of stream, or a
    // reset for the requests it never read), not left open.
    hog.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sink = Vec::new();
    match hog.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "the hog's connection is still open: {e}"),
    }
}

/// --max-inflight-bytes holds across clients and both faces: while two
/// clients hold 129 KB of their 130 KB uploads open, a third request gets
/// 503 at once, and a gRPC call whose message would pass the budget gets
/// UNAVAILABLE as its bytes arrive; once the uploads are given up, the
/// same request is answered. Bytes count as they arrive, not as declared.
#[test]
fn the_byte_budget_holds_across_clients_and_faces() {
    let dir = tmp();
    let (images, _) = mnist_images(dir.path(), 1);
    let server =
        Server::start(&root().join("models"), &["--max-body", "128K", "--max-inflight-bytes", "256K", "--log", "warn"]);
    let a = server.http.clone();
    let mut body = json_infer(&images, 1, &[]);
    body.resize(130_000, b' ');
    let path = "/v2/models/classifier/infer";
    let head = format!("POST {path} HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n", body.len());
    let holders: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut holder = connect(&a);
            holder.write_all(head.as_bytes()).unwrap();
            holder.write_all(&body[..129_000]).unwrap();
            holder
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let r = request(&a, "POST", path, &[], &body);
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.error().contains("--max-inflight-bytes (262144 bytes)"), "{}", r.error());
    assert!(t0.elapsed() < Duration::from_millis(500), "refused after {:?}", t0.elapsed());

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = h2_client(&server.grpc).await;
        let (response, mut stream) = client.send_request(model_infer_call(None), false).unwrap();
        let mut message = vec![0u8];
        message.extend_from_slice(&100_000u32.to_be_bytes());
        message.resize(5 + 60_000, 0);
        stream.reserve_capacity(message.len());
        stream.send_data(bytes::Bytes::from(message), false).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(5), response).await.expect("no answer").unwrap();
        assert_eq!(grpc_status(response).await, "14", "UNAVAILABLE");
    });
    drop(holders);
    std::thread::sleep(Duration::from_millis(300));
    let r = request(&a, "POST", path, &[], &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// Over --max-connections, a new connection gets 503 and is closed; a
/// freed slot serves again.
#[test]
fn connections_over_the_limit_get_503() {
    let server = Server::start(&root().join("models"), &["--max-connections", "2", "--log", "warn"]);
    let a = server.http.as_str();
    let held: Vec<TcpStream> = (0..2).map(|_| connect(a)).collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut extra = connect(a);
    send(&mut extra, "GET", "/v2/health/live", &[], b"").unwrap();
    let r = read_reply(&mut extra).unwrap();
    assert_eq!(r.status, 503);
    assert!(r.error().contains("too many connections"), "{}", r.error());
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get(a, "/v2/health/live").status, 200);
}

/// End to end: clients that hang up while their request waits in the
/// queue are skipped by it (the handler is dropped with the connection,
/// which closes the request's receiver); none of them is answered.
#[test]
fn requests_of_clients_that_hang_up_are_skipped() {
    let dir = tmp();
    let (images, _) = mnist_images(dir.path(), 64);
    let server = Server::start(&root().join("models"), &["--log", "warn", "--max-batch", "64"]);
    let body = Arc::new(json_infer(&images, 64, &[]));
    let busy: Vec<_> = (0..4)
        .map(|_| {
            let (a, body) = (server.http.clone(), body.clone());
            std::thread::spawn(move || {
                for _ in 0..15 {
                    assert_eq!(request(&a, "POST", "/v2/models/autoencoder/infer", &[], &body).status, 200);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut gone = Vec::new();
    for _ in 0..20 {
        let mut s = connect(&server.http);
        send(&mut s, "POST", "/v2/models/autoencoder/infer", &[], &body).unwrap();
        gone.push(s);
    }
    std::thread::sleep(Duration::from_millis(50));
    drop(gone);
    for t in busy {
        t.join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let m = String::from_utf8(get(&server.http, "/metrics").body).unwrap();
    let dropped = metric(&m, "infer_requests_dropped_total{model=\"autoencoder\",version=\"1\"}");
    let ran = metric(&m, "infer_batch_size_count{model=\"autoencoder\",version=\"1\"}");
    assert!(dropped >= 1.0, "no abandoned request was skipped: {m}");
    // (A request whose connection closed before its body was read never
    // reaches the queue at all: neither ran nor skipped.)
    assert!(ran + dropped <= 60.0 + 20.0 && ran >= 60.0, "{m}");
    // Only the scrape itself is in flight: the abandoned requests left the
    // gauge when hyper dropped them.
    assert_eq!(metric(&m, "infer_requests_in_flight"), 1.0, "{m}");
}

/// A panic on a session thread answers the requests of its batch with 500
/// and one line, and the thread goes on: the next request is answered and
/// the model stays ready (before, the batch's clients waited for ever and
/// every later request was told the queue was full).
#[test]
fn a_panicking_batch_answers_500_and_the_model_keeps_serving() {
    let dir = tmp();
    let (images, _) = mnist_images(dir.path(), 2);
    let server = Server::start_env(&root().join("models"), &["--log", "warn"], &[("INFER_FAULT", "session-panic@1")]);
    let body = json_infer(&images, 2, &[]);
    let r = request(&server.http, "POST", "/v2/models/classifier/infer", &[], &body);
    assert_eq!(r.status, 500, "{}", r.error());
    assert!(
        r.error().contains("the session thread failed on this batch (panic: INFER_FAULT session-panic@1)"),
        "{}",
        r.error()
    );
    let r = request(&server.http, "POST", "/v2/models/classifier/infer", &[], &body);
    assert_eq!(r.status, 200, "{}", r.error());
    assert_eq!(get(&server.http, "/v2/models/classifier/ready").status, 200);
}

/// A model whose output does not have the batch first would have its
/// rows split wrongly under load: refused at start-up, naming the output.
#[test]
fn a_model_whose_output_is_not_batch_first_is_refused_at_start() {
    let dir = tmp();
    let mut m = fixture_model("classifier", 8, 8);
    let g = m.graph.as_mut().unwrap();
    // probabilities [batch, 10] → [10, batch]
    let softmax = g.node.last_mut().unwrap();
    (softmax.output[0], softmax.name) = ("rows".into(), "rows".into());
    g.node.push(node("Transpose", &["rows"], "probabilities", vec![ae_onnx::AttributeProto::ints("perm", &[1, 0])]));
    g.output[0] = ae_onnx::ValueInfoProto::tensor_f32(
        "probabilities",
        &[ae_onnx::Dim::Fixed(10), ae_onnx::Dim::Symbolic("batch".into())],
    );
    std::fs::write(dir.path().join("sideways.onnx"), m.to_bytes()).unwrap();
    let mut child = server_binary()
        .args(["--models", dir.path().to_str().unwrap(), "--http-port", "0", "--grpc-port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A server that starts anyway is stopped after 20 s (and fails below).
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{err}");
    assert!(
        err.contains("model sideways version 1: output \"probabilities\" of a ")
            && err.contains("has shape [10, ")
            && err.contains("so it must be the batch"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// A POST with a JSON body (or none) on a fresh connection.
fn post_json(addr: &str, path: &str, body: &serde_json::Value) -> Reply {
    let bytes = if body.is_null() { Vec::new() } else { serde_json::to_vec(body).unwrap() };
    request(addr, "POST", path, &[], &bytes)
}

/// The repository index as `(name, version, state, reason)` rows.
fn index(addr: &str, ready: bool) -> Vec<(String, String, String, String)> {
    let r = post_json(addr, "/v2/repository/index", &serde_json::json!({ "ready": ready }));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (s(&e["name"]), s(&e["version"]), s(&e["state"]), s(&e["reason"])))
        .collect()
}

/// Triton's model repository extension in explicit mode: what is loaded at
/// start, index, load, unload, a new version, a load that fails (the old
/// version serves on, the index says why), a load with its own config, and
/// the refusals (none mode, unknown parameters and models).
#[test]
fn the_model_repository_loads_unloads_and_indexes() {
    let dir = tmp();
    let repo = dir.path().join("repo");
    let classifier = std::fs::read(root().join("models/classifier.onnx")).unwrap();
    let autoencoder = std::fs::read(root().join("models/autoencoder.onnx")).unwrap();
    let config = |name: &str| format!("name: \"{name}\"\nbackend: \"onnxruntime\"\nmax_batch_size: 8\n");
    for (name, bytes) in [("digits", &classifier), ("pixels", &autoencoder)] {
        std::fs::create_dir_all(repo.join(name).join("1")).unwrap();
        std::fs::write(repo.join(name).join("1/model.onnx"), bytes).unwrap();
        std::fs::write(repo.join(name).join("config.pbtxt"), config(name)).unwrap();
    }
    let (images, _) = mnist_images(dir.path(), 9);
    let one = json_infer(&images[..784], 1, &[]);
    let server = Server::start(&repo, &["--model-control-mode", "explicit", "--load-model", "digits", "--log", "warn"]);
    let a = server.http.as_str();
    let row = |name: &str, version: &str, state: &str, reason: &str| {
        (name.to_string(), version.to_string(), state.to_string(), reason.to_string())
    };
    assert_eq!(index(a, false), [row("digits", "1", "READY", ""), row("pixels", "", "UNAVAILABLE", "unloaded")]);
    assert_eq!(index(a, true), [row("digits", "1", "READY", "")]);
    let r = request(a, "POST", "/v2/models/pixels/infer", &[], &one);
    assert_eq!((r.status, r.error()), (404, "model \"pixels\" is not loaded: unloaded".to_string()));

    // Load, serve, unload.
    let r = post_json(a, "/v2/repository/models/pixels/load", &serde_json::Value::Null);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(request(a, "POST", "/v2/models/pixels/infer", &[], &one).status, 200);
    let r = post_json(
        a,
        "/v2/repository/models/digits/unload",
        &serde_json::json!({"parameters": {"unload_dependents": false}}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(request(a, "POST", "/v2/models/digits/infer", &[], &one).status, 404);
    assert_eq!(get(a, "/v2/models/digits/ready").status, 404);
    assert_eq!(index(a, false)[0], row("digits", "", "UNAVAILABLE", "unloaded"));

    // A new version: loaded, warmed up, then swapped in; the metrics carry it.
    std::fs::create_dir_all(repo.join("digits/2")).unwrap();
    std::fs::write(repo.join("digits/2/model.onnx"), &classifier).unwrap();
    assert_eq!(post_json(a, "/v2/repository/models/digits/load", &serde_json::Value::Null).status, 200);
    let r = request(a, "POST", "/v2/models/digits/infer", &[], &one);
    assert_eq!(r.json()["model_version"], "2");
    assert_eq!(index(a, true), [row("digits", "2", "READY", ""), row("pixels", "1", "READY", "")]);
    let m = String::from_utf8(get(a, "/metrics").body).unwrap();
    assert_eq!(metric(&m, "infer_batch_size_count{model=\"digits\",version=\"2\"}"), 1.0, "{m}");
    assert_eq!(metric(&m, "infer_model_loads_total{model=\"digits\",result=\"ok\"}"), 2.0, "{m}");

    // A load that fails leaves version 2 serving, and the index says why.
    std::fs::create_dir_all(repo.join("digits/3")).unwrap();
    std::fs::write(repo.join("digits/3/model.onnx"), b"not onnx").unwrap();
    let r = post_json(a, "/v2/repository/models/digits/load", &serde_json::Value::Null);
    let failed = r.error().replace(&repo.display().to_string(), "REPO");
    assert_eq!(r.status, 400, "{failed}");
    assert!(
        failed.contains("model digits version 3 failed to load") && failed.contains("REPO/digits/3/model.onnx"),
        "{failed}"
    );
    assert_eq!(request(a, "POST", "/v2/models/digits/infer", &[], &one).json()["model_version"], "2");
    let (_, version, state, reason) = index(a, false).remove(0);
    assert_eq!((version.as_str(), state.as_str()), ("2", "READY"));
    assert!(
        reason.starts_with("the last load failed, the versions loaded before serve on: model digits version 3"),
        "{reason}"
    );
    let m = String::from_utf8(get(a, "/metrics").body).unwrap();
    assert_eq!(metric(&m, "infer_model_loads_total{model=\"digits\",result=\"failed\"}"), 1.0, "{m}");
    std::fs::remove_dir_all(repo.join("digits/3")).unwrap();

    // A load with its own config (JSON, in place of config.pbtxt).
    let own =
        serde_json::json!({"name": "digits", "max_batch_size": 4, "version_policy": {"specific": {"versions": [1]}}});
    let r = post_json(
        a,
        "/v2/repository/models/digits/load",
        &serde_json::json!({"parameters": {"config": own.to_string()}}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(index(a, true)[0], row("digits", "1", "READY", ""));
    let r = request(a, "POST", "/v2/models/digits/infer", &[], &json_infer(&images[..5 * 784], 5, &[]));
    assert!(r.error().contains("1 to 4"), "{}", r.error());

    // Refusals, one line each.
    let refusals = [
        post_json(
            a,
            "/v2/repository/models/digits/load",
            &serde_json::json!({"parameters": {"file:1/model.onnx": "AAAA"}}),
        ),
        post_json(
            a,
            "/v2/repository/models/digits/load",
            &serde_json::json!({"parameters": {"config": "{\"max_batch\": 4}"}}),
        ),
        post_json(a, "/v2/repository/models/resnet/load", &serde_json::Value::Null),
        post_json(a, "/v2/repository/models/resnet/unload", &serde_json::Value::Null),
        post_json(a, "/v2/repository/models/..%2Fetc/load", &serde_json::Value::Null),
        post_json(a, "/v2/repository/index", &serde_json::json!({"repository_name": "other"})),
        post_json(a, "/v2/repository/index", &serde_json::json!([1])),
    ];
    let shown: Vec<String> = refusals
        .iter()
        .map(|r| format!("{} {}", r.status, r.error().replace(&repo.display().to_string(), "REPO")))
        .collect();
    let statuses: Vec<u16> = refusals.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [400, 400, 400, 404, 400, 400, 400], "{shown:#?}");
    assert_eq!(index(a, false).len(), 2, "refused names leave no trace in the index");
    drop(server);

    // Without explicit mode, the models are the folder's and stay.
    let server = Server::start(&repo, &["--log", "warn"]);
    let r = post_json(server.http.as_str(), "/v2/repository/models/digits/unload", &serde_json::Value::Null);
    let mut shown = shown;
    shown.push(format!("{} {}", r.status, r.error()));
    drop(server);
    let (code, _, err) = infer_cmd(&["serve", "--models", &repo.display().to_string(), "--load-model", "digits"]);
    assert_eq!(code, 2, "{err}");
    shown.push(err.trim().to_string());
    let (code, _, err) = infer_cmd(&[
        "serve",
        "--models",
        &repo.display().to_string(),
        "--model-control-mode",
        "explicit",
        "--load-model",
        "resnet",
    ]);
    assert_eq!(code, 2, "{err}");
    shown.push(err.trim().replace(&repo.display().to_string(), "REPO"));
    insta::assert_snapshot!("repository_refusals", shown.join("\n"));
}

/// The logits a server answers for one image, on connection `s`.
fn logits_on(s: &mut TcpStream, images: &[f32], i: usize) -> std::io::Result<Reply> {
    send(s, "POST", "/v2/models/digits/infer", &[], &json_infer(&images[i * 784..(i + 1) * 784], 1, &["logits"]))?;
    read_reply(s)
}

/// Replaces `path`'s bytes as a copy does: truncated, then written in
/// pieces `pause` apart (`pieces` 1: at once, by a rename).
fn copy_in(path: &Path, bytes: &[u8], pieces: usize, pause: Duration) {
    if pieces == 1 {
        let partial = path.with_extension("partial");
        std::fs::write(&partial, bytes).unwrap();
        std::fs::rename(&partial, path).unwrap();
        return;
    }
    let mut f = std::fs::File::create(path).unwrap();
    for chunk in bytes.chunks(bytes.len().div_ceil(pieces)) {
        f.write_all(chunk).unwrap();
        f.flush().unwrap();
        std::thread::sleep(pause);
    }
}

/// 16 clients for 20 s while the model's file is replaced by another
/// model (the int8 export: another set of weights) and back, and reloaded
/// (`explicit`: by the load call; `poll`: by the server, the file copied in
/// slowly, in pieces). No request fails, and every answer is one of the two
/// models' for that image.
fn reload_under_load(mode: &str) {
    let dir = tmp();
    let (images, _) = mnist_images(dir.path(), 16);
    let a = std::fs::read(root().join("models/classifier.onnx")).unwrap();
    let b = std::fs::read(root().join("models/classifier.int8.onnx")).unwrap();
    // Each model's logits per image, from a server of its own.
    let reference = |bytes: &[u8]| {
        let folder = dir.path().join(format!("ref{}", bytes.len()));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("digits.onnx"), bytes).unwrap();
        let server = Server::start(&folder, &["--log", "warn"]);
        let mut s = connect(&server.http);
        (0..16).map(|i| json_rows(&logits_on(&mut s, &images, i).unwrap(), "logits")).collect::<Vec<_>>()
    };
    let (ref_a, ref_b) = (reference(&a), reference(&b));
    let far = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
    const TOL: f32 = 1e-4;
    let apart = (0..16).map(|i| far(&ref_a[i], &ref_b[i])).fold(f32::MAX, f32::min);
    assert!(apart > 100.0 * TOL, "the two models must answer apart: {apart}");

    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let file = repo.join("digits.onnx");
    std::fs::write(&file, &a).unwrap();
    let mut args = vec!["--model-control-mode", mode, "--repository-poll-secs", "1", "--log", "warn"];
    if mode == "explicit" {
        args.extend(["--load-model", "digits"]);
    }
    let server = Server::start(&repo, &args);
    let addr = server.http.clone();
    let start = Instant::now();
    let run_for = Duration::from_secs(20);
    // Per client: answers matching A, matching B, matching neither, failed.
    let tallies = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let (addr, images, ref_a, ref_b, tallies) =
                (addr.clone(), images.clone(), ref_a.clone(), ref_b.clone(), tallies.clone());
            std::thread::spawn(move || {
                let mut t = [0usize; 4];
                let mut failures = Vec::new();
                let mut s = connect(&addr);
                let mut k = c;
                while start.elapsed() < run_for {
                    let i = k % 16;
                    k += 7;
                    match logits_on(&mut s, &images, i) {
                        Ok(r) if r.status == 200 => {
                            let got = json_rows(&r, "logits");
                            let which = if far(&got, &ref_a[i]) <= TOL {
                                0
                            } else if far(&got, &ref_b[i]) <= TOL {
                                1
                            } else {
                                2
                            };
                            t[which] += 1;
                        }
                        Ok(r) => {
                            t[3] += 1;
                            failures.push(format!("{} {}", r.status, String::from_utf8_lossy(&r.body)));
                        }
                        Err(e) => {
                            t[3] += 1;
                            failures.push(e.to_string());
                            s = connect(&addr);
                        }
                    }
                }
                tallies.lock().unwrap().push((t, failures));
            })
        })
        .collect();
    let loads = |outcome: &str| {
        let m = String::from_utf8(get(&addr, "/metrics").body).unwrap();
        metric(&m, &format!("infer_model_loads_total{{model=\"digits\",result=\"{outcome}\"}}"))
    };
    // B at 4 s, A at 10 s, B at 16 s.
    for (at, bytes) in [(4, &b), (10, &a), (16, &b)] {
        std::thread::sleep(Duration::from_secs(at).saturating_sub(start.elapsed()));
        let before = loads("ok");
        if mode == "explicit" {
            copy_in(&file, bytes, 1, Duration::ZERO);
            let r = post_json(&addr, "/v2/repository/models/digits/load", &serde_json::Value::Null);
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        } else {
            // Slower than a look: the server must wait until the pieces stop.
            copy_in(&file, bytes, 20, Duration::from_millis(100));
            let t0 = Instant::now();
            while loads("ok") == before {
                assert!(t0.elapsed() < Duration::from_secs(5), "poll mode did not reload within 5 s");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        assert_eq!(loads("ok"), before + 1.0);
    }
    for c in clients {
        c.join().unwrap();
    }
    let tallies = tallies.lock().unwrap();
    let sum = |k: usize| tallies.iter().map(|(t, _)| t[k]).sum::<usize>();
    let failures: Vec<&String> = tallies.iter().flat_map(|(_, f)| f).take(5).collect();
    let shown = format!("{mode}: A {} B {} neither {} failed {} {failures:?}", sum(0), sum(1), sum(2), sum(3));
    eprintln!("{shown}");
    assert_eq!((sum(2), sum(3)), (0, 0), "{shown}");
    assert!(sum(0) > 100 && sum(1) > 100, "{shown}");
    // Never a half-copied model: no load failed.
    assert_eq!(loads("failed"), 0.0, "{shown}\n{}", server.log());
    assert_eq!(loads("ok"), 4.0, "{shown}");
}

#[test]
fn a_reload_under_load_fails_no_request_explicit() {
    reload_under_load("explicit");
}

#[test]
fn a_reload_under_load_fails_no_request_poll() {
    reload_under_load("poll");
}

/// An infer body longer than the model's largest batch can need is
/// refused from its declared length, before any of it is read; pictures
/// keep --max-body.
#[test]
fn the_body_limit_follows_the_model() {
    let server = Server::start(&root().join("models"), &["--log", "warn", "--max-batch", "8"]);
    let declare = |path: &str, len: usize| {
        let mut s = connect(&server.http);
        s.write_all(format!("POST {path} HTTP/1.1\r\nhost: t\r\ncontent-length: {len}\r\n\r\n").as_bytes()).unwrap();
        let r = read_reply(&mut s).unwrap();
        (r.status, if r.status == 413 { r.error() } else { String::new() })
    };
    // 8 images of 784 values at 64 bytes each, and 64 KiB: 466,944 bytes.
    let (status, error) = declare("/v2/models/classifier/infer", 466_945);
    assert_eq!(status, 413);
    insta::assert_snapshot!("model_body_limit", error);
    // At the limit, the server waits for the body (then times out on it): not refused up front.
    let mut s = connect(&server.http);
    s.write_all(b"POST /v2/models/classifier/infer HTTP/1.1\r\nhost: t\r\ncontent-length: 466944\r\n\r\n{").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let waiting = |r: std::io::Result<Reply>| matches!(r, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
    assert!(waiting(read_reply(&mut s)), "a body within the limit is read");
    // A picture is not an infer request: --max-body (64 MiB) still holds there.
    let mut s = connect(&server.http);
    s.write_all(b"POST /classify/classifier HTTP/1.1\r\nhost: t\r\ncontent-length: 466945\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    assert!(waiting(read_reply(&mut s)), "a picture within --max-body is read");
}

/// Models made elsewhere, in one folder with ours: a classifier whose
/// batch is fixed at 1 and whose output is logits (the ONNX Model Zoo's
/// mnist-12 form) is served as Triton serves it (max_batch_size 0, its
/// whole shape in the config and metadata, one image a request, never
/// merged), its rows equal to `infer classify`'s, `/classify` applying
/// softmax; a file ONNX Runtime cannot load stops the start (exit 2,
/// naming it), or with `--exit-on-error false` is listed UNAVAILABLE with
/// its reason while the others serve.
#[test]
fn models_made_elsewhere_are_served_or_listed_with_their_reason() {
    use ae_onnx::{Dim, ValueInfoProto};
    let dir = tmp();
    let folder = dir.path().join("models");
    std::fs::create_dir_all(&folder).unwrap();
    let mut m = fixture_model("classifier", 8, 8);
    let g = m.graph.as_mut().unwrap();
    g.node.pop(); // the Softmax: logits out
    g.input[0] = ValueInfoProto::tensor_f32("Input3", &[Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(8), Dim::Fixed(8)]);
    g.node[0].input[0] = "Input3".into();
    g.output = vec![ValueInfoProto::tensor_f32("logits", &[Dim::Fixed(1), Dim::Fixed(10)])];
    std::fs::write(folder.join("zoo.onnx"), m.to_bytes()).unwrap();
    // Keras's form: uint8 pixels, channels last, cast and transposed inside.
    let mut m = fixture_model("classifier", 8, 8);
    let g = m.graph.as_mut().unwrap();
    let batch = Dim::Symbolic("N".into());
    g.input[0] = ValueInfoProto::tensor_f32("pixels", &[batch, Dim::Fixed(8), Dim::Fixed(8), Dim::Fixed(1)]);
    g.input[0].r#type.as_mut().unwrap().tensor_type.as_mut().unwrap().elem_type = 2; // UINT8
    g.node.insert(0, node("Cast", &["pixels"], "as_float", vec![ae_onnx::AttributeProto::int("to", 1)]));
    g.node.insert(
        1,
        node("Transpose", &["as_float"], "image", vec![ae_onnx::AttributeProto::ints("perm", &[0, 3, 1, 2])]),
    );
    std::fs::write(folder.join("keras.onnx"), m.to_bytes()).unwrap();
    std::fs::write(folder.join("classifier.onnx"), fixture_model("classifier", 8, 8).to_bytes()).unwrap();
    std::fs::write(folder.join("broken.onnx"), b"not a model").unwrap();

    // By default a model that does not load stops the start, naming it.
    let args = ["serve", "--models", &folder.display().to_string(), "--http-port", "0", "--grpc-port", "0"];
    let (code, _, err) = infer_cmd(&args);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("broken.onnx") && err.lines().count() <= 2, "{err}");

    let server = Server::start(&folder, &["--exit-on-error", "false", "--log", "warn"]);
    let a = server.http.as_str();
    let states: Vec<_> = index(a, false).into_iter().map(|(n, _, s, r)| (n, s, r.contains("cannot load"))).collect();
    assert_eq!(
        states,
        [
            ("broken".to_string(), "UNAVAILABLE".to_string(), true),
            ("classifier".into(), "READY".into(), false),
            ("keras".into(), "READY".into(), false),
            ("zoo".into(), "READY".into(), false)
        ]
    );
    let config = get(a, "/v2/models/zoo/config").json();
    assert_eq!(
        (config["max_batch_size"].clone(), config["input"][0]["dims"].clone()),
        (0.into(), serde_json::json!([1, 1, 8, 8]))
    );
    assert!(config.get("dynamic_batching").is_none_or(|d| d.is_null()), "{config}");
    assert_eq!(get(a, "/v2/models/zoo").json()["inputs"][0]["shape"], serde_json::json!([1, 1, 8, 8]));

    // Eight images, one a request from eight clients at once: each runs alone.
    let pixels: Vec<u8> = (0..8 * 64).map(|i| ((i * 37) % 256) as u8).collect();
    let images_path = dir.path().join("images");
    idx::write_images(&images_path, &Images { count: 8, channels: 1, rows: 8, cols: 8, pixels: pixels.clone() }, false)
        .unwrap();
    // What infer classify gives for the eight images: each served answer is held to it.
    let classified = |model: &str| {
        let npy = dir.path().join("p.npy");
        let (code, _, err) = infer_cmd(&[
            "classify",
            "--model",
            &folder.join(model).display().to_string(),
            "--images",
            &images_path.display().to_string(),
            "--probabilities",
            &npy.display().to_string(),
            "--quiet",
        ]);
        assert_eq!(code, 0, "{err}");
        read_f32(&npy).unwrap().1
    };
    let want = classified("zoo.onnx");
    let x: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    let rows: Vec<Vec<f32>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let x = &x;
                s.spawn(move || {
                    let body = serde_json::to_vec(&serde_json::json!({"inputs": [
                        {"name": "Input3", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": &x[i * 64..(i + 1) * 64]}
                    ]}))
                    .unwrap();
                    json_rows(&request(a, "POST", "/v2/models/zoo/infer", &[], &body), "logits")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, mut logits) in rows.into_iter().enumerate() {
        infer::contract::softmax(&mut logits);
        assert_eq!(bits(&logits), bits(&want[i * 10..(i + 1) * 10]), "image {i}: softmax of the served logits");
    }
    let text = String::from_utf8(get(a, "/metrics").body).unwrap();
    let runs = metric(&text, r#"infer_batch_size_count{model="zoo",version="1"}"#);
    assert_eq!((runs, metric(&text, r#"infer_batch_size_sum{model="zoo",version="1"}"#)), (8.0, 8.0), "{text}");
    // Two images are more than it takes.
    let two = serde_json::to_vec(&serde_json::json!({"inputs": [
        {"name": "Input3", "shape": [2, 1, 8, 8], "datatype": "FP32", "data": &x[..128]}
    ]}))
    .unwrap();
    let r = request(a, "POST", "/v2/models/zoo/infer", &[], &two);
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    // /classify reads the contract: softmax of the logits, the class classify names.
    let png = {
        let img = image::GrayImage::from_raw(8, 8, pixels[..64].to_vec()).unwrap();
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let r = request(a, "POST", "/classify/zoo", &[("content-type", "image/png".into())], &png);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let p: Vec<f32> = serde_json::from_value(r.json()["probabilities"].clone()).unwrap();
    assert_eq!(bits(&p), bits(&want[..10]));

    // The uint8 NHWC model is served in its own datatype and layout.
    let config = get(a, "/v2/models/keras/config").json();
    assert_eq!(
        (config["input"][0]["data_type"].clone(), config["input"][0]["dims"].clone()),
        ("TYPE_UINT8".into(), serde_json::json!([8, 8, 1]))
    );
    let meta = get(a, "/v2/models/keras").json();
    assert_eq!(
        (meta["inputs"][0]["datatype"].clone(), meta["inputs"][0]["shape"].clone()),
        ("UINT8".into(), serde_json::json!([-1, 8, 8, 1]))
    );
    let want = classified("keras.onnx");
    let infer_u8 = |data: serde_json::Value, n: usize| {
        let body = serde_json::to_vec(&serde_json::json!({"inputs": [
            {"name": "pixels", "shape": [n, 8, 8, 1], "datatype": "UINT8", "data": data}
        ]}))
        .unwrap();
        request(a, "POST", "/v2/models/keras/infer", &[], &body)
    };
    let r = infer_u8(serde_json::json!(pixels), 8);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(bits(&json_rows(&r, "probabilities")), bits(&want), "the served uint8 rows are infer classify's");
    // Raw binary (IHCL 0): the bytes themselves.
    let r = request(a, "POST", "/v2/models/keras/infer", &[("inference-header-content-length", "0".into())], &pixels);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(bits(&json_rows(&r, "probabilities")), bits(&want));
    let mut bad = serde_json::json!(pixels[..64]);
    bad[5] = 256.into();
    let r = infer_u8(bad, 1);
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("holds 256 at index 5; UINT8 takes whole numbers 0 to 255"));
    let r = request(a, "POST", "/classify/keras", &[("content-type", "image/png".into())], &png);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let p: Vec<f32> = serde_json::from_value(r.json()["probabilities"].clone()).unwrap();
    assert_eq!(bits(&p), bits(&want[..10]), "/classify feeds the picture's bytes");
}

#[test]
fn help_snapshot() {
    let (code, out, _) = infer_cmd(&["serve", "--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("infer_help_serve", out);
}
