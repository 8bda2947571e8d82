//! A raw-to-qcow2 writer: what diskimage-builder gets from `qemu-img convert [-c] -f raw -O
//! qcow2`, written directly in Rust.
//!
//! The output is a qcow2 version 3 image (qemu's `compat=1.1`) with 16-bit refcounts, zlib
//! compression type, no backing file, no encryption, no snapshots and no header extension but
//! the end marker. All-zero clusters are left unallocated, so the image is as sparse as
//! qemu-img makes it. With [`Qcow2Options::compress`] each other cluster is compressed on its
//! own as raw deflate with a 4 KiB window (what QEMU inflates with) and the compressed clusters
//! are packed back to back, as `qemu-img convert -c` does; a cluster that does not shrink below
//! the cluster size is stored as it is.
//!
//! Layout: the header in cluster 0, then the data clusters in guest order, then the L2 tables,
//! the L1 table, the refcount table and the refcount blocks. The output depends only on the
//! input and the cluster size and compression choice: no timestamps, and the same bytes
//! whatever the number of threads (clusters are compressed in parallel batches and written in
//! order).
//!
//! [`convert_raw`] reads a raw file, skipping its holes (`SEEK_DATA`/`SEEK_HOLE`) without
//! reading them and mapping its data into memory rather than copying it, and writes the image
//! to a temporary file next to the output that is renamed into place once complete;
//! [`write_qcow2`] is the streaming form over any reader and seekable writer.
//!
//! It is not a qcow2 reader or a general qcow2 editor: it does not open existing images,
//! resize them or write backing chains, snapshots, bitmaps, extended L2 entries, external data
//! files or zstd compression.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

use flate2::{Compress, Compression, FlushCompress, Status};
use nix::fcntl::{fallocate, FallocateFlags};

use crate::Error;

/// The cluster size qemu-img uses unless told otherwise.
pub const DEFAULT_CLUSTER_SIZE: u32 = 65536;

/// The deflate level of compressed clusters: zlib's default, which QEMU uses.
pub const COMPRESSION_LEVEL: u32 = 6;

/// L2 and L1 entry flag: the cluster's refcount is exactly one.
const OFLAG_COPIED: u64 = 1 << 63;
/// L2 entry flag: a compressed cluster descriptor.
const OFLAG_COMPRESSED: u64 = 1 << 62;
/// Host offsets in L1 and standard L2 entries (bits 9..=55).
#[cfg(test)]
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// The unit of the compressed descriptor's sector count.
const SECTOR: u64 = 512;
/// QEMU refuses L1 tables larger than this (`QCOW_MAX_L1_SIZE`).
const MAX_L1_BYTES: u64 = 32 << 20;
/// The length of the version 3 header we write (up to and including the compression type,
/// padded to a multiple of 8 as QEMU writes it).
const HEADER_LENGTH: u32 = 112;
/// Virtual bytes read (and compressed by one worker) at a time, rounded to whole clusters.
const BATCH_BYTES: usize = 2 << 20;

/// How to write the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qcow2Options {
    /// Compress clusters (`qemu-img convert -c`).
    pub compress: bool,
    /// Bytes per cluster: a power of two from 512 to 2 MiB (default 65536).
    pub cluster_size: u32,
    /// Threads that compress clusters (default: the available parallelism; 0 is taken as 1),
    /// besides one reading and one writing (all an uncompressed image takes). The output does
    /// not depend on it.
    pub threads: usize,
}

impl Default for Qcow2Options {
    fn default() -> Self {
        Qcow2Options {
            compress: false,
            cluster_size: DEFAULT_CLUSTER_SIZE,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Qcow2Stats {
    /// The image's virtual size in bytes (the input's size rounded up to 512 bytes).
    pub virtual_size: u64,
    /// Guest clusters holding data (compressed or not); all-zero clusters are not allocated.
    pub allocated_clusters: u64,
    /// Of those, the clusters stored compressed.
    pub compressed_clusters: u64,
    /// The size of the qcow2 file in bytes.
    pub file_size: u64,
}

/// Converts the raw image `raw` to the qcow2 image `output` (replaced if it exists).
///
/// Holes of `raw` are skipped without being read, and its data is mapped into memory rather
/// than copied out of the page cache: `raw` must not be truncated or written to while it is
/// converted (a file truncated under a mapping ends the process with `SIGBUS`, as for any
/// memory-mapped reader). The image is written to a temporary file in `output`'s directory and
/// renamed to `output` when complete; on error nothing is left behind. Like `qemu-img convert`
/// (whose output cache mode defaults to `unsafe`), it does not sync the image to disk: callers
/// that need durability sync it.
pub fn convert_raw(raw: &Path, output: &Path, options: &Qcow2Options) -> Result<Qcow2Stats, Error> {
    let geometry_error = |message: String| Error::Image {
        path: output.to_path_buf(),
        message,
    };
    let bits = cluster_bits(options.cluster_size).map_err(geometry_error)?;
    let input = File::open(raw).map_err(|e| Error::io(raw, &e))?;
    let meta = input.metadata().map_err(|e| Error::io(raw, &e))?;
    if meta.is_dir() {
        return Err(Error::Image {
            path: raw.to_path_buf(),
            message: "is a directory, not a raw image".into(),
        });
    }
    let len = meta.len();
    let geometry = Geometry::new(len, bits).map_err(geometry_error)?;

    let temp = TempFile::create(output)?;
    let mapping = Mapping::new(&input, len);
    let source = FileSource::new(input, len);
    let result = run(
        source,
        mapping.as_ref().map(Mapping::bytes),
        &geometry,
        &temp.file,
        Some(temp.file.as_fd()),
        options,
    );
    let stats = result.map_err(|fail| match fail {
        Fail::Read(e) => Error::io(raw, &e),
        Fail::Write(e) => Error::io(output, &e),
    })?;
    temp.persist()?;
    Ok(stats)
}

/// Writes a qcow2 image of the `virtual_size` bytes read from `input` to `output`, which
/// should be empty (the image starts at offset 0 of it).
///
/// Exactly `virtual_size` bytes are read; an input that ends earlier is an error. A size that
/// is not a multiple of 512 is rounded up with zeros, as QEMU sizes images in sectors. The
/// output is neither flushed nor synced. Errors are about the input (`reading the raw
/// input: …`) or the output (`writing the qcow2 output: …`), with the kind of the underlying
/// error. `input` is read on a thread of its own, hence `Send`.
pub fn write_qcow2<R: Read + Send, W: Write + Seek>(
    input: R,
    virtual_size: u64,
    output: W,
    options: &Qcow2Options,
) -> io::Result<Qcow2Stats> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
    let bits = cluster_bits(options.cluster_size).map_err(invalid)?;
    let geometry = Geometry::new(virtual_size, bits).map_err(invalid)?;
    let source = StreamSource {
        input,
        position: 0,
        len: virtual_size,
    };
    run(source, None, &geometry, output, None, options).map_err(|fail| match fail {
        Fail::Read(e) => io::Error::new(e.kind(), format!("reading the raw input: {e}")),
        Fail::Write(e) => io::Error::new(e.kind(), format!("writing the qcow2 output: {e}")),
    })
}

/// The L2 entry of a compressed cluster whose `len` bytes of deflate data start at host
/// byte `offset`: bit 62 set, the offset in the low `62 - (cluster_bits - 8)` bits and above
/// it the number of 512-byte sectors the data reaches into beyond the one holding `offset`.
fn compressed_descriptor(offset: u64, len: u64, cluster_bits: u32) -> u64 {
    debug_assert!(len > 0);
    let shift = 62 - (cluster_bits - 8);
    let additional_sectors = (offset + len - 1) / SECTOR - offset / SECTOR;
    OFLAG_COMPRESSED | (additional_sectors << shift) | offset
}

/// The bytes QEMU reads for a compressed cluster descriptor: its host offset and the length
/// up to the end of its last sector (how `qemu-img check` counts the clusters it touches).
#[cfg(test)]
fn parse_compressed_descriptor(entry: u64, cluster_bits: u32) -> (u64, u64) {
    let shift = 62 - (cluster_bits - 8);
    let offset = entry & ((1 << shift) - 1);
    let sectors = ((entry >> shift) & ((1 << (cluster_bits - 8)) - 1)) + 1;
    (offset, sectors * SECTOR - offset % SECTOR)
}

fn cluster_bits(cluster_size: u32) -> Result<u32, String> {
    if cluster_size.is_power_of_two() && (512..=(2 << 20)).contains(&cluster_size) {
        Ok(cluster_size.trailing_zeros())
    } else {
        Err(format!(
            "cluster size {cluster_size} is not a power of two from 512 to 2097152"
        ))
    }
}

/// Sizes derived from the input size and the cluster size.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    bits: u32,
    cluster_size: usize,
    /// The virtual size in the header: `input_len` rounded up to 512.
    virtual_size: u64,
    l1_size: u64,
}

impl Geometry {
    fn new(input_len: u64, bits: u32) -> Result<Geometry, String> {
        let cluster_size = 1usize << bits;
        let virtual_size = input_len
            .checked_next_multiple_of(SECTOR)
            .ok_or("virtual size too large")?;
        let clusters = virtual_size.div_ceil(cluster_size as u64);
        let l1_size = clusters.div_ceil(cluster_size as u64 / 8);
        if l1_size * 8 > MAX_L1_BYTES {
            return Err(format!(
                "virtual size {virtual_size} is too large for {cluster_size}-byte clusters"
            ));
        }
        Ok(Geometry {
            bits,
            cluster_size,
            virtual_size,
            l1_size,
        })
    }

    /// The virtual size rounded up to whole clusters.
    fn padded_size(&self) -> u64 {
        self.virtual_size.next_multiple_of(self.cluster_size as u64)
    }
}

/// Where an operation failed: reading the input or writing the output.
#[derive(Debug)]
enum Fail {
    Read(io::Error),
    Write(io::Error),
}

/// The raw input, read in order.
trait Source: Send {
    /// The first offset at or after `from` that may hold data, or `None` if all is zero from
    /// there on.
    fn next_data(&mut self, from: u64) -> io::Result<Option<u64>>;
    /// Where the data at `at` ends (`at` itself if it is in a hole), at most at the end of
    /// the input.
    fn data_end(&mut self, at: u64) -> io::Result<u64>;
    /// Fills `buf` with the input at `offset` (zeros past its end). Offsets only grow.
    fn fill(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// A raw file, with its holes found by `SEEK_DATA`/`SEEK_HOLE` and not read.
struct FileSource {
    file: File,
    len: u64,
    /// What is known around the last position looked up: `[hole_from, data_from)` is a hole
    /// and `[data_from, data_to)` is data (`u64::MAX` bounds: no data after the hole).
    hole_from: u64,
    data_from: u64,
    data_to: u64,
}

impl FileSource {
    fn new(file: File, len: u64) -> FileSource {
        let mut source = FileSource {
            file,
            len,
            hole_from: 0,
            data_from: 0,
            data_to: 0,
        };
        // Files on file systems without SEEK_DATA read as all data.
        if source.look_up(0).is_err() {
            source.data_to = u64::MAX;
        }
        source
    }

    /// Finds the hole and data extent at or after `from`.
    fn look_up(&mut self, from: u64) -> io::Result<()> {
        use nix::errno::Errno;
        use nix::unistd::{lseek, Whence};
        self.hole_from = from;
        let Ok(offset) = i64::try_from(from) else {
            self.data_from = u64::MAX;
            self.data_to = u64::MAX;
            return Ok(());
        };
        match lseek(&self.file, offset, Whence::SeekData) {
            Ok(data) => {
                let hole = lseek(&self.file, data, Whence::SeekHole)?;
                self.data_from = data as u64;
                self.data_to = hole as u64;
                Ok(())
            }
            Err(Errno::ENXIO) => {
                self.data_from = u64::MAX;
                self.data_to = u64::MAX;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Makes `[hole_from, data_to)` contain `at`.
    fn locate(&mut self, at: u64) -> io::Result<()> {
        if at < self.hole_from || (at >= self.data_to && self.data_to != u64::MAX) {
            self.look_up(at)?;
        }
        Ok(())
    }
}

impl Source for FileSource {
    fn next_data(&mut self, from: u64) -> io::Result<Option<u64>> {
        if from >= self.len {
            return Ok(None);
        }
        self.locate(from)?;
        Ok(if self.data_from == u64::MAX {
            None
        } else {
            Some(from.max(self.data_from))
        })
    }

    fn data_end(&mut self, at: u64) -> io::Result<u64> {
        if at >= self.len {
            return Ok(at);
        }
        self.locate(at)?;
        Ok(if at < self.data_from {
            at
        } else {
            self.data_to.min(self.len)
        })
    }

    fn fill(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        let mut at = offset;
        while at < end {
            let done = (at - offset) as usize;
            if at >= self.len {
                buf[done..].fill(0);
                break;
            }
            self.locate(at)?;
            if at < self.data_from {
                let to = self.data_from.min(end);
                buf[done..(to - offset) as usize].fill(0);
                at = to;
                continue;
            }
            let to = self.data_to.min(end).min(self.len);
            let part = &mut buf[done..(to - offset) as usize];
            self.file.read_exact_at(part, at)?;
            at = to;
        }
        Ok(())
    }
}

/// A read-only shared memory mapping of a whole file, so that its data clusters are checked,
/// compressed and written without first being copied out of the page cache.
struct Mapping {
    address: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only memory owned by this value, readable from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above; shared references only read it.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `file`, or `None` if that cannot be done (an empty file,
    /// a file system without mmap): the file is then read instead.
    fn new(file: &File, len: u64) -> Option<Mapping> {
        let len = usize::try_from(len).ok().filter(|&len| len > 0)?;
        // SAFETY: a new mapping at an address the kernel chooses, of a descriptor open for
        // reading; it aliases no Rust memory.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: advice about the mapping just made; failure is harmless.
        unsafe { libc::madvise(address, len, libc::MADV_SEQUENTIAL) };
        Some(Mapping { address, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` readable bytes at `address` for as long as `self` lives. The file must
        // not change while it is converted (see `convert_raw`).
        unsafe { std::slice::from_raw_parts(self.address.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps what `new` mapped; no reference from `bytes` outlives `self`.
        unsafe { libc::munmap(self.address, self.len) };
    }
}

/// Any reader, read sequentially.
struct StreamSource<R> {
    input: R,
    position: u64,
    len: u64,
}

impl<R: Read + Send> Source for StreamSource<R> {
    fn next_data(&mut self, from: u64) -> io::Result<Option<u64>> {
        Ok((from < self.len).then_some(from))
    }

    fn data_end(&mut self, at: u64) -> io::Result<u64> {
        Ok(self.len.max(at))
    }

    fn fill(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        debug_assert_eq!(offset, self.position);
        let available = self.len.saturating_sub(offset).min(buf.len() as u64) as usize;
        let (data, zeros) = buf.split_at_mut(available);
        self.input.read_exact(data).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(
                    e.kind(),
                    format!("input ends before its size of {} bytes", self.len),
                )
            } else {
                e
            }
        })?;
        zeros.fill(0);
        self.position += buf.len() as u64;
        Ok(())
    }
}

/// What became of one guest cluster of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Zero,
    Raw,
    /// Compressed to `out[start..start + len]`.
    Compressed {
        start: usize,
        len: usize,
    },
}

/// Consecutive guest clusters on their way from the reader through a worker to the writer.
#[derive(Debug, Default)]
struct Batch {
    sequence: u64,
    first_cluster: u64,
    /// The clusters' bytes: this range of the mapped input, or else `data`.
    mapped: Option<Range<usize>>,
    data: Vec<u8>,
    kinds: Vec<Kind>,
    out: Vec<u8>,
}

/// The bytes of `batch`'s clusters.
fn batch_bytes<'a>(
    mapped: &Option<Range<usize>>,
    data: &'a [u8],
    map: Option<&'a [u8]>,
) -> &'a [u8] {
    match (mapped, map) {
        (Some(range), Some(map)) => &map[range.clone()],
        _ => data,
    }
}

/// Reads, classifies and compresses the input on worker threads and writes the image.
fn run<S: Source, W: Write + Seek>(
    mut source: S,
    map: Option<&[u8]>,
    geometry: &Geometry,
    output: W,
    preallocate: Option<BorrowedFd<'_>>,
    options: &Qcow2Options,
) -> Result<Qcow2Stats, Fail> {
    let workers = options.threads.max(1);
    let cluster_size = geometry.cluster_size;
    let batch_clusters = (BATCH_BYTES / cluster_size).max(1);
    let buffers = workers * 2 + 2;

    let (free_tx, free_rx) = sync_channel::<Batch>(buffers);
    for _ in 0..buffers {
        let _ = free_tx.send(Batch::default());
    }
    let (work_tx, work_rx) = sync_channel::<Batch>(buffers);
    let (done_tx, done_rx) = sync_channel::<Batch>(buffers);
    let work_rx = Mutex::new(work_rx);
    let compress = options.compress;

    std::thread::scope(|scope| {
        // Compressing takes workers; checking for zeros keeps up with reading.
        let reader = if compress {
            for _ in 0..workers {
                let done_tx = done_tx.clone();
                let work_rx = &work_rx;
                scope.spawn(move || compress_batches(work_rx, done_tx, map, cluster_size));
            }
            scope.spawn(move || {
                read_batches(
                    &mut source,
                    map,
                    geometry,
                    batch_clusters,
                    free_rx,
                    work_tx,
                    None,
                )
            })
        } else {
            let done_tx = done_tx.clone();
            let classifier = Classifier::new(cluster_size, false);
            scope.spawn(move || {
                read_batches(
                    &mut source,
                    map,
                    geometry,
                    batch_clusters,
                    free_rx,
                    done_tx,
                    Some(classifier),
                )
            })
        };
        drop(done_tx);
        let mut image = Image::new(output, geometry);
        image.preallocate = preallocate;
        let written = write_batches(image, map, done_rx, free_tx);
        let read = reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // A read error stops the pipeline early, which the writer does not notice.
        read.map_err(Fail::Read)?;
        written
    })
}

/// The reader: fills batches of clusters that may hold data, in order (and classifies them
/// if given a classifier).
fn read_batches<S: Source>(
    source: &mut S,
    map: Option<&[u8]>,
    geometry: &Geometry,
    batch_clusters: usize,
    free: Receiver<Batch>,
    work: SyncSender<Batch>,
    mut classifier: Option<Classifier>,
) -> io::Result<()> {
    let cluster_size = geometry.cluster_size as u64;
    let end = geometry.padded_size();
    let mut position = 0;
    let mut sequence = 0;
    while position < end {
        let Some(data) = source.next_data(position)? else {
            break;
        };
        position = position.max(data / cluster_size * cluster_size);
        if position >= end {
            break;
        }
        let mut to = (position + batch_clusters as u64 * cluster_size).min(end);
        let Ok(mut batch) = free.recv() else {
            return Ok(()); // The writer stopped.
        };
        // Whole clusters of data in the mapped input are used in place; the others (holes
        // in part, the end of the input) are read.
        let mapped_to = match map {
            Some(_) => (source.data_end(position)? / cluster_size * cluster_size).min(to),
            None => position,
        };
        if mapped_to > position {
            to = mapped_to;
            batch.mapped = Some(position as usize..to as usize);
        } else {
            if map.is_some() {
                to = (position + cluster_size).min(end);
            }
            batch.mapped = None;
            batch.data.resize((to - position) as usize, 0);
            source.fill(position, &mut batch.data)?;
        }
        batch.sequence = sequence;
        batch.first_cluster = position / cluster_size;
        if let Some(classifier) = classifier.as_mut() {
            classifier.classify(&mut batch, map);
        }
        if work.send(batch).is_err() {
            return Ok(());
        }
        sequence += 1;
        position = to;
    }
    Ok(())
}

/// Sorts the clusters of batches into zero, raw and compressed.
struct Classifier {
    cluster_size: usize,
    deflate: Option<Compress>,
    /// Output room per cluster: deflate's worst case (zlib's deflateBound for non-default
    /// window sizes), so that every stream finishes (zlib-rs 0.6 can panic in a stream reset
    /// after one that ran out of output room).
    room: usize,
}

impl Classifier {
    fn new(cluster_size: usize, compress: bool) -> Classifier {
        Classifier {
            cluster_size,
            deflate: compress.then(new_deflate),
            room: cluster_size + cluster_size.div_ceil(8) + cluster_size.div_ceil(64) + 13,
        }
    }

    fn classify(&mut self, batch: &mut Batch, map: Option<&[u8]>) {
        let Batch {
            mapped,
            data,
            kinds,
            out,
            ..
        } = batch;
        let bytes = batch_bytes(mapped, data, map);
        let (cluster_size, room) = (self.cluster_size, self.room);
        kinds.clear();
        if self.deflate.is_some() {
            out.resize(bytes.len() + room, 0);
        }
        let mut used = 0;
        for cluster in bytes.chunks_exact(cluster_size) {
            let kind = if is_zero(cluster) {
                Kind::Zero
            } else if let Some(deflate) = self.deflate.as_mut() {
                deflate.reset();
                match deflate.compress(cluster, &mut out[used..used + room], FlushCompress::Finish)
                {
                    // Only a result smaller than the cluster is kept (QEMU's rule).
                    Ok(Status::StreamEnd) if deflate.total_out() < cluster_size as u64 => {
                        let len = deflate.total_out() as usize;
                        let kind = Kind::Compressed { start: used, len };
                        used += len;
                        kind
                    }
                    Ok(Status::StreamEnd) => Kind::Raw,
                    _ => {
                        // Not expected with that room; never reuse an unfinished stream.
                        *deflate = new_deflate();
                        Kind::Raw
                    }
                }
            } else {
                Kind::Raw
            };
            kinds.push(kind);
        }
    }
}

/// Raw deflate with a 4 KiB window, as QEMU inflates it.
fn new_deflate() -> Compress {
    Compress::new_with_window_bits(Compression::new(COMPRESSION_LEVEL), false, 12)
}

/// A compressing worker.
fn compress_batches(
    work: &Mutex<Receiver<Batch>>,
    done: SyncSender<Batch>,
    map: Option<&[u8]>,
    cluster_size: usize,
) {
    let mut classifier = Classifier::new(cluster_size, true);
    loop {
        let next = work.lock().map(|rx| rx.recv());
        let Ok(Ok(mut batch)) = next else {
            return;
        };
        classifier.classify(&mut batch, map);
        if done.send(batch).is_err() {
            return;
        }
    }
}

/// Whether `buf` is all zeros, 256 bytes at a time.
fn is_zero(buf: &[u8]) -> bool {
    let mut blocks = buf.chunks_exact(256);
    for block in &mut blocks {
        let mut acc = 0u128;
        for word in block.chunks_exact(16) {
            acc |= u128::from_ne_bytes(word.try_into().unwrap_or_default());
        }
        if acc != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&b| b == 0)
}

/// The writer: puts the batches in order, writes their clusters and then the metadata.
fn write_batches<W: Write + Seek>(
    mut image: Image<'_, W>,
    map: Option<&[u8]>,
    done: Receiver<Batch>,
    free: SyncSender<Batch>,
) -> Result<Qcow2Stats, Fail> {
    let mut pending = BTreeMap::new();
    let mut next = 0;
    for batch in done {
        pending.insert(batch.sequence, batch);
        while let Some(batch) = pending.remove(&next) {
            image.add_batch(&batch, map).map_err(Fail::Write)?;
            let _ = free.send(batch);
            next += 1;
        }
    }
    image.finish().map_err(Fail::Write)
}

/// The image being written.
struct Image<'a, W> {
    output: W,
    /// The output file, to allocate space for runs of clusters before writing them (which
    /// spares the file system allocating as it goes: a third faster on ext4, as qemu-img does).
    preallocate: Option<BorrowedFd<'a>>,
    geometry: Geometry,
    /// Where the output's file position is (`u64::MAX`: not known yet).
    position: u64,
    /// The next unallocated (cluster-aligned) host offset.
    end: u64,
    /// Refcounts of the host clusters below `end`.
    refcounts: Vec<u16>,
    /// L2 tables by L1 index, made when a cluster of theirs gets data.
    l2: BTreeMap<u64, Vec<u64>>,
    /// The cluster that compressed data is being packed into.
    open: Option<OpenCluster>,
    stats: Qcow2Stats,
}

struct OpenCluster {
    offset: u64,
    data: Vec<u8>,
}

impl<W: Write + Seek> Image<'_, W> {
    fn new(output: W, geometry: &Geometry) -> Self {
        Image {
            output,
            preallocate: None,
            geometry: *geometry,
            position: u64::MAX,
            end: geometry.cluster_size as u64,
            refcounts: vec![1], // the header
            l2: BTreeMap::new(),
            open: None,
            stats: Qcow2Stats {
                virtual_size: geometry.virtual_size,
                ..Qcow2Stats::default()
            },
        }
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        if self.position != offset {
            self.output.seek(SeekFrom::Start(offset))?;
        }
        self.output.write_all(bytes)?;
        self.position = offset + bytes.len() as u64;
        Ok(())
    }

    /// Allocates `count` clusters at the end with refcount 1.
    fn allocate(&mut self, count: u64) -> u64 {
        let offset = self.end;
        self.end += count << self.geometry.bits;
        self.refcounts.extend((0..count).map(|_| 1));
        offset
    }

    fn map(&mut self, guest_cluster: u64, entry: u64) {
        let per_table = (self.geometry.cluster_size / 8) as u64;
        let table = self
            .l2
            .entry(guest_cluster / per_table)
            .or_insert_with(|| vec![0; per_table as usize]);
        table[(guest_cluster % per_table) as usize] = entry;
    }

    fn add_batch(&mut self, batch: &Batch, map: Option<&[u8]>) -> io::Result<()> {
        let cluster_size = self.geometry.cluster_size;
        let data = batch_bytes(&batch.mapped, &batch.data, map);
        let mut index = 0;
        while index < batch.kinds.len() {
            match batch.kinds[index] {
                Kind::Zero => index += 1,
                Kind::Raw => {
                    let run = batch.kinds[index..]
                        .iter()
                        .take_while(|&&k| k == Kind::Raw)
                        .count();
                    let host = self.allocate(run as u64);
                    let bytes = &data[index * cluster_size..(index + run) * cluster_size];
                    if let Some(fd) = self.preallocate {
                        let (offset, len) = (host as i64, bytes.len() as i64);
                        // Best effort: without it, the write allocates.
                        if fallocate(fd, FallocateFlags::empty(), offset, len).is_err() {
                            self.preallocate = None;
                        }
                    }
                    self.write_at(host, bytes)?;
                    for i in 0..run {
                        let guest = batch.first_cluster + (index + i) as u64;
                        self.map(guest, (host + (i * cluster_size) as u64) | OFLAG_COPIED);
                    }
                    self.stats.allocated_clusters += run as u64;
                    index += run;
                }
                Kind::Compressed { start, len } => {
                    let host = self.pack(&batch.out[start..start + len])?;
                    let entry = compressed_descriptor(host, len as u64, self.geometry.bits);
                    self.map(batch.first_cluster + index as u64, entry);
                    self.stats.allocated_clusters += 1;
                    self.stats.compressed_clusters += 1;
                    index += 1;
                }
            }
        }
        Ok(())
    }

    /// Places compressed data after the previous one, spilling into the next cluster when that
    /// is free, as QEMU's `qcow2_alloc_bytes` does. Each cluster the data touches counts one
    /// more reference.
    fn pack(&mut self, bytes: &[u8]) -> io::Result<u64> {
        let cluster_size = self.geometry.cluster_size;
        if let Some(open) = self.open.take() {
            let index = (open.offset >> self.geometry.bits) as usize;
            let room = cluster_size - open.data.len();
            let at = open.offset + open.data.len() as u64;
            let last = open.offset + cluster_size as u64 == self.end;
            let full = self.refcounts[index] == u16::MAX;
            if !full && bytes.len() <= room {
                self.refcounts[index] += 1;
                let mut open = open;
                open.data.extend_from_slice(bytes);
                if open.data.len() == cluster_size {
                    self.write_at(open.offset, &open.data)?;
                } else {
                    self.open = Some(open);
                }
                return Ok(at);
            }
            if !full && last {
                self.refcounts[index] += 1;
                let mut open = open;
                open.data.extend_from_slice(&bytes[..room]);
                self.write_at(open.offset, &open.data)?;
                let offset = self.allocate(1);
                open.offset = offset;
                open.data.clear();
                open.data.extend_from_slice(&bytes[room..]);
                self.open = Some(open);
                return Ok(at);
            }
            // Not enough room and no way to spill: the rest of that cluster stays unused.
            self.write_at(open.offset, &open.data)?;
        }
        let offset = self.allocate(1);
        let mut data = Vec::with_capacity(cluster_size);
        data.extend_from_slice(bytes);
        self.open = Some(OpenCluster { offset, data });
        Ok(offset)
    }

    /// Writes the L2 tables, L1 table, refcount table and blocks and the header.
    fn finish(mut self) -> io::Result<Qcow2Stats> {
        if let Some(open) = self.open.take() {
            self.write_at(open.offset, &open.data)?;
        }
        let geometry = self.geometry;
        let cluster_size = geometry.cluster_size as u64;

        let mut l1 = vec![0u64; geometry.l1_size as usize];
        let tables = std::mem::take(&mut self.l2);
        let mut bytes = Vec::with_capacity(geometry.cluster_size);
        for (index, table) in tables {
            let offset = self.allocate(1);
            l1[index as usize] = offset | OFLAG_COPIED;
            bytes.clear();
            bytes.extend(table.iter().flat_map(|entry| entry.to_be_bytes()));
            self.write_at(offset, &bytes)?;
        }

        let l1_clusters = (geometry.l1_size * 8).div_ceil(cluster_size);
        let l1_offset = self.allocate(l1_clusters);
        if l1_clusters > 0 {
            let mut bytes: Vec<u8> = l1.iter().flat_map(|entry| entry.to_be_bytes()).collect();
            bytes.resize((l1_clusters * cluster_size) as usize, 0);
            self.write_at(l1_offset, &bytes)?;
        }

        // The refcount table and blocks must cover themselves too.
        let used = self.end / cluster_size;
        let per_block = cluster_size / 2;
        let mut blocks = used.div_ceil(per_block);
        let table_clusters = loop {
            let table_clusters = (blocks * 8).div_ceil(cluster_size).max(1);
            let needed = (used + table_clusters + blocks).div_ceil(per_block);
            if needed <= blocks {
                break table_clusters;
            }
            blocks = needed;
        };
        let table_offset = self.allocate(table_clusters);
        let blocks_offset = self.allocate(blocks);

        let mut table = vec![0u8; (table_clusters * cluster_size) as usize];
        for block in 0..blocks {
            let offset = blocks_offset + block * cluster_size;
            table[block as usize * 8..][..8].copy_from_slice(&offset.to_be_bytes());
        }
        let mut refcounts = vec![0u8; (blocks * cluster_size) as usize];
        for (i, count) in self.refcounts.iter().enumerate() {
            refcounts[i * 2..][..2].copy_from_slice(&count.to_be_bytes());
        }
        let mut bytes = table;
        bytes.extend_from_slice(&refcounts);
        self.write_at(table_offset, &bytes)?;

        let header = header(&geometry, l1_offset, table_offset, table_clusters);
        self.write_at(0, &header)?;
        self.output.flush()?;

        self.stats.file_size = self.end;
        Ok(self.stats)
    }
}

/// The version 3 header: no backing file, encryption, snapshots or features, 16-bit
/// refcounts, zlib compression, and the end-of-extensions marker (zeros) after it.
fn header(geometry: &Geometry, l1_offset: u64, table_offset: u64, table_clusters: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LENGTH as usize + 8);
    h.extend_from_slice(b"QFI\xfb");
    h.extend_from_slice(&3u32.to_be_bytes()); // version
    h.extend_from_slice(&0u64.to_be_bytes()); // backing_file_offset
    h.extend_from_slice(&0u32.to_be_bytes()); // backing_file_size
    h.extend_from_slice(&geometry.bits.to_be_bytes()); // cluster_bits
    h.extend_from_slice(&geometry.virtual_size.to_be_bytes()); // size
    h.extend_from_slice(&0u32.to_be_bytes()); // crypt_method
    h.extend_from_slice(&(geometry.l1_size as u32).to_be_bytes()); // l1_size
    h.extend_from_slice(&l1_offset.to_be_bytes()); // l1_table_offset
    h.extend_from_slice(&table_offset.to_be_bytes()); // refcount_table_offset
    h.extend_from_slice(&(table_clusters as u32).to_be_bytes()); // refcount_table_clusters
    h.extend_from_slice(&0u32.to_be_bytes()); // nb_snapshots
    h.extend_from_slice(&0u64.to_be_bytes()); // snapshots_offset
    h.extend_from_slice(&0u64.to_be_bytes()); // incompatible_features (not dirty)
    h.extend_from_slice(&0u64.to_be_bytes()); // compatible_features
    h.extend_from_slice(&0u64.to_be_bytes()); // autoclear_features
    h.extend_from_slice(&4u32.to_be_bytes()); // refcount_order: 16 bits
    h.extend_from_slice(&HEADER_LENGTH.to_be_bytes()); // header_length
    h.push(0); // compression_type: zlib
    h.resize(HEADER_LENGTH as usize, 0); // padding
    h.extend_from_slice(&[0; 8]); // end of header extensions
    h
}

/// The temporary file an image is written to, removed unless persisted.
struct TempFile {
    file: File,
    path: PathBuf,
    target: PathBuf,
    keep: bool,
}

impl TempFile {
    fn create(target: &Path) -> Result<TempFile, Error> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = target.file_name().ok_or_else(|| Error::Image {
            path: target.to_path_buf(),
            message: "output path has no file name".into(),
        })?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(
            ".tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let path = target.with_file_name(temp_name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(target, &e))?;
        Ok(TempFile {
            file,
            path,
            target: target.to_path_buf(),
            keep: false,
        })
    }

    fn persist(mut self) -> Result<(), Error> {
        std::fs::rename(&self.path, &self.target).map_err(|e| Error::io(&self.target, &e))?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};
    use std::io::Cursor;

    #[test]
    fn descriptor_within_one_sector() {
        // 64 KiB clusters: offset in bits 0..=53, additional sectors from bit 54.
        let entry = compressed_descriptor(0x10000, 100, 16);
        assert_eq!(entry, (1 << 62) | 0x10000);
        assert_eq!(parse_compressed_descriptor(entry, 16), (0x10000, 512));
    }

    #[test]
    fn descriptor_counts_sectors_beyond_the_first() {
        // 0x10100 + 0x300 - 1 = 0x103ff: sectors 0x80 .. 0x81, one additional.
        let entry = compressed_descriptor(0x10100, 0x300, 16);
        assert_eq!(entry, (1 << 62) | (1 << 54) | 0x10100);
        // Ending exactly at a sector boundary does not count the next sector.
        let entry = compressed_descriptor(0x10100, 0x100, 16);
        assert_eq!(entry >> 54 & 0xff, 0);
        let entry = compressed_descriptor(0x10100, 0x101, 16);
        assert_eq!(entry >> 54 & 0xff, 1);
        let (offset, len) = parse_compressed_descriptor(entry, 16);
        assert_eq!((offset, len), (0x10100, 0x300));
    }

    #[test]
    fn descriptor_field_widths_follow_cluster_bits() {
        // 2 MiB clusters: x = 62 - 13 = 49; 4 KiB clusters: x = 58; 512-byte: x = 61.
        let entry = compressed_descriptor(0x1234_5000, (2 << 20) - 1, 21);
        assert_eq!(entry & ((1 << 49) - 1), 0x1234_5000);
        assert_eq!(entry >> 49 & 0x1fff, 4095);
        let entry = compressed_descriptor(513, 512, 12);
        assert_eq!(entry, (1 << 62) | (1 << 58) | 513);
        let entry = compressed_descriptor(1000, 100, 9);
        assert_eq!(entry, (1 << 62) | (1 << 61) | 1000);
        assert_eq!(parse_compressed_descriptor(entry, 9), (1000, 1024 - 488));
    }

    #[test]
    fn cluster_sizes() {
        assert_eq!(cluster_bits(65536), Ok(16));
        assert_eq!(cluster_bits(512), Ok(9));
        assert_eq!(cluster_bits(2 << 20), Ok(21));
        assert!(cluster_bits(256).is_err());
        assert!(cluster_bits(4 << 20).is_err());
        assert!(cluster_bits(65535).is_err());
    }

    #[test]
    fn zero_detection() {
        let mut buf = vec![0u8; 65536];
        assert!(is_zero(&buf));
        buf[65535] = 1;
        assert!(!is_zero(&buf));
        assert!(!is_zero(&[0, 0, 1]));
        assert!(is_zero(&[]));
    }

    /// Reads guest data back from an image the way QEMU does, checking refcounts.
    fn read_back(image: &[u8]) -> Vec<u8> {
        let be64 = |at: usize| u64::from_be_bytes(image[at..at + 8].try_into().unwrap());
        let be32 = |at: usize| u32::from_be_bytes(image[at..at + 4].try_into().unwrap());
        assert_eq!(&image[..4], b"QFI\xfb");
        let bits = be32(20);
        let cluster_size = 1usize << bits;
        let size = be64(24) as usize;
        let (l1_size, l1_offset) = (be32(36) as usize, be64(40) as usize);
        let (rt_offset, rt_clusters) = (be64(48) as usize, be32(56) as usize);
        let mut counted = vec![0u16; image.len().div_ceil(cluster_size)];
        let mut count = |offset: usize, len: usize| {
            let clusters = offset / cluster_size..(offset + len).div_ceil(cluster_size);
            counted[clusters].iter_mut().for_each(|c| *c += 1);
        };
        count(0, 1);
        count(l1_offset, l1_size * 8);
        count(rt_offset, rt_clusters * cluster_size);
        for i in 0..rt_clusters * cluster_size / 8 {
            let block = be64(rt_offset + i * 8) as usize;
            if block != 0 {
                count(block, cluster_size);
            }
        }
        let mut guest = vec![0u8; size.next_multiple_of(cluster_size)];
        let per_table = cluster_size / 8;
        for l1 in 0..l1_size {
            let l2_offset = (be64(l1_offset + l1 * 8) & OFFSET_MASK) as usize;
            if l2_offset == 0 {
                continue;
            }
            count(l2_offset, cluster_size);
            for i in 0..per_table {
                let entry = be64(l2_offset + i * 8);
                let dest = (l1 * per_table + i) * cluster_size;
                if entry & OFLAG_COMPRESSED != 0 {
                    let (offset, len) = parse_compressed_descriptor(entry, bits);
                    let (offset, len) = (offset as usize, len as usize);
                    count(offset, len);
                    let end = (offset + len).min(image.len());
                    let mut inflate = Decompress::new_with_window_bits(false, 12);
                    let out = &mut guest[dest..dest + cluster_size];
                    inflate
                        .decompress(&image[offset..end], out, FlushDecompress::Finish)
                        .unwrap();
                    assert_eq!(inflate.total_out() as usize, cluster_size);
                } else if entry != 0 {
                    assert_ne!(entry & OFLAG_COPIED, 0);
                    let offset = (entry & OFFSET_MASK) as usize;
                    count(offset, cluster_size);
                    guest[dest..dest + cluster_size]
                        .copy_from_slice(&image[offset..offset + cluster_size]);
                }
            }
        }
        for (block, c) in counted.chunks(cluster_size / 2).enumerate() {
            let block_offset = be64(rt_offset + block * 8) as usize;
            for (i, &expected) in c.iter().enumerate() {
                let at = block_offset + i * 2;
                let stored = u16::from_be_bytes([image[at], image[at + 1]]);
                assert_eq!(
                    stored,
                    expected,
                    "refcount of host cluster {}",
                    block * c.len() + i
                );
            }
        }
        guest.truncate(size);
        guest
    }

    fn sample(len: usize) -> Vec<u8> {
        // Compressible text, incompressible noise and zero runs.
        let mut data = vec![0u8; len];
        let mut state = 0x1234_5678u32;
        for (i, chunk) in data.chunks_mut(4096).enumerate() {
            match i % 7 {
                0 | 3 => chunk
                    .iter_mut()
                    .enumerate()
                    .for_each(|(j, b)| *b = b"qcow2 "[j % 6]),
                1 | 5 => chunk.iter_mut().for_each(|b| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    *b = state as u8;
                }),
                _ => {}
            }
        }
        data
    }

    #[test]
    fn round_trip_in_memory() {
        for cluster_size in [512, 4096, 65536] {
            for compress in [false, true] {
                let data = sample(300_000 + 123);
                let options = Qcow2Options {
                    compress,
                    cluster_size,
                    threads: 3,
                };
                let mut out = Cursor::new(Vec::new());
                let stats = write_qcow2(&data[..], data.len() as u64, &mut out, &options).unwrap();
                let image = out.into_inner();
                assert_eq!(stats.file_size, image.len() as u64);
                assert_eq!(
                    stats.virtual_size,
                    (data.len() as u64).next_multiple_of(512)
                );
                let back = read_back(&image);
                assert_eq!(&back[..data.len()], &data[..]);
                assert!(back[data.len()..].iter().all(|&b| b == 0));
                assert_eq!(compress, stats.compressed_clusters > 0);
            }
        }
    }

    #[test]
    fn short_input_is_an_error() {
        let data = vec![1u8; 1000];
        let mut out = Cursor::new(Vec::new());
        let err = write_qcow2(&data[..], 4096, &mut out, &Qcow2Options::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            err.to_string().starts_with("reading the raw input: "),
            "{err}"
        );
    }
}
