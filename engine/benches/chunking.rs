//! Chunking throughput: FastCDC + SHA-256 (+ zstd-1) over 256 MiB of mixed data on both cores,
//! next to the reference tools over the same bytes in the same run (`openssl dgst -sha256`,
//! `zstd -1 -T2`). `scripts/bench-engine` turns the estimates into the ratios in BENCHMARKS.md.

use std::io::Write;
use std::process::{Command, Stdio};

use cloud3_engine::chunk::{cdc, compress};
use cloud3_engine::ids::ChunkId;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TOTAL: usize = 256 << 20;
/// The data is cut into files of this size, as a folder scan hands them to the workers.
const FILE: usize = 8 << 20;

/// Mixed data, one third each: random (incompressible), text-like, and sparse (mostly zeros with
/// random patches, like databases and disk images).
fn mixed_data(seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "sync", "folder", "chunk", "the", "device", "relay", "offline", "conflict", "a", "of",
        "merge", "document", "file", "and", "copy", "version", "hash", "to", "in", "byte",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut data = Vec::with_capacity(TOTAL);
    let segment = 1 << 20;
    let mut kind = 0;
    while data.len() < TOTAL {
        let end = (data.len() + segment).min(TOTAL);
        match kind % 3 {
            0 => {
                let start = data.len();
                data.resize(end, 0);
                rng.fill_bytes(&mut data[start..]);
            }
            1 => {
                while data.len() < end {
                    let word = WORDS[rng.random_range(0..WORDS.len())];
                    data.extend_from_slice(word.as_bytes());
                    data.push(if rng.random_range(0..12) == 0 {
                        b'\n'
                    } else {
                        b' '
                    });
                }
                data.truncate(end);
            }
            _ => {
                let start = data.len();
                data.resize(end, 0);
                let mut at = start;
                while at < end {
                    let len = rng.random_range(16..512).min(end - at);
                    rng.fill_bytes(&mut data[at..at + len]);
                    at += len + rng.random_range(1024..16384);
                }
            }
        }
        kind += 1;
    }
    data
}

/// Runs `work` over every file of `data` (with its index) on two threads, each taking every
/// other file.
fn on_two_threads(data: &[u8], work: impl Fn(usize, &[u8]) -> usize + Sync) -> usize {
    let files: Vec<&[u8]> = data.chunks(FILE).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|worker| {
                let (files, work) = (&files, &work);
                scope.spawn(move || {
                    files
                        .iter()
                        .enumerate()
                        .skip(worker)
                        .step_by(2)
                        .map(|(n, file)| work(n, file))
                        .sum::<usize>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker")).sum()
    })
}

fn cdc_sha256(file: &[u8]) -> usize {
    cdc::cut(file)
        .map(|range| ChunkId::of(&file[range]).0[0] as usize)
        .sum()
}

fn cdc_sha256_zstd(file: &[u8]) -> usize {
    cdc::cut(file)
        .map(|range| {
            let raw = &file[range];
            ChunkId::of(raw);
            compress(raw).bytes.len()
        })
        .sum()
}

fn run_tool(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{program} is needed for the reference figures: {e}"));
    assert!(status.success(), "{program} failed");
}

fn chunking(c: &mut Criterion) {
    let data = mixed_data(1);
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(&data).expect("write bench data");
    file.flush().expect("flush bench data");
    let path = file.path().to_str().expect("utf-8 temp path").to_owned();
    let compressed: usize = data.chunks(FILE).map(cdc_sha256_zstd).sum();
    eprintln!(
        "mixed data: {} MiB, {} chunks, compressed to {:.1}%",
        TOTAL >> 20,
        data.chunks(FILE)
            .map(|f| cdc::cut(f).count())
            .sum::<usize>(),
        compressed as f64 * 100.0 / TOTAL as f64
    );

    let mut group = c.benchmark_group("chunking_256MiB_mixed");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(TOTAL as u64));
    group.bench_function("reference_openssl_dgst_sha256", |b| {
        b.iter(|| run_tool("openssl", &["dgst", "-sha256", &path]))
    });
    group.bench_function("reference_zstd_1_T2", |b| {
        b.iter(|| run_tool("zstd", &["-q", "-1", "-T2", "-c", &path]))
    });
    group.bench_function("sha256_one_thread", |b| b.iter(|| ChunkId::of(&data)));
    group.bench_function("cdc_one_thread", |b| b.iter(|| cdc::cut(&data).count()));
    group.bench_function("cdc_sha256_two_threads", |b| {
        b.iter(|| on_two_threads(&data, |_, file| cdc_sha256(file)))
    });
    group.bench_function("cdc_sha256_zstd1_two_threads", |b| {
        b.iter(|| on_two_threads(&data, |_, file| cdc_sha256_zstd(file)))
    });
    // The floor for any pipeline that compresses every chunk at level 1: the same chunks'
    // compression alone (cut beforehand, no CDC or SHA-256 timed).
    let cuts: Vec<Vec<std::ops::Range<usize>>> = data
        .chunks(FILE)
        .map(|file| cdc::cut(file).collect())
        .collect();
    group.bench_function("zstd1_only_two_threads", |b| {
        b.iter(|| {
            on_two_threads(&data, |n, file| {
                cuts[n]
                    .iter()
                    .map(|range| compress(&file[range.clone()]).bytes.len())
                    .sum()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, chunking);
criterion_main!(benches);
