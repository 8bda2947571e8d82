//! MBR partition tables, laid out and written in Rust (no loop device, no fdisk): primaries
//! first, logical partitions in an extended partition with a chain of EBRs, everything
//! aligned, as diskimage-builder's native MBR writer places them.

use std::io::{Seek, SeekFrom, Write};

use crate::elements::Error;
use crate::size::Size;

pub const SECTOR: u64 = 512;
/// Partitions start on 1 MiB boundaries.
pub const ALIGNMENT: u64 = 2048;
const HEADS: u64 = 254;
const SECTORS_PER_TRACK: u64 = 63;
const EXTENDED: u8 = 0x0F;
const EBR_LINK: u8 = 0x05;

/// A partition as the configuration asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionSpec {
    pub name: String,
    pub size: Size,
    pub primary: bool,
    pub bootable: bool,
    /// The MBR type byte (0x83 Linux, 0x0c FAT32 LBA, …).
    pub kind: u8,
}

/// A placed table entry (partition number from 1, extended entry included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub number: u32,
    pub start: u64,
    pub end: u64,
    pub kind: u8,
    pub bootable: bool,
    /// For logicals: the sector of their EBR.
    pub ebr: Option<u64>,
}

/// The whole table: entries in number order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub disk_sectors: u64,
    pub entries: Vec<Entry>,
}

fn align_up(sector: u64) -> u64 {
    sector.div_ceil(ALIGNMENT) * ALIGNMENT
}

fn error(message: impl Into<String>) -> Error {
    Error::Layout(message.into())
}

impl Layout {
    /// Places `partitions` on a disk of `disk_bytes`.
    pub fn plan(disk_bytes: u64, partitions: &[PartitionSpec]) -> Result<Layout, Error> {
        let disk_sectors = disk_bytes / SECTOR;
        let mut layout = Layout {
            disk_sectors,
            entries: Vec::new(),
        };
        let mut free = ALIGNMENT;
        let mut primaries = 0u32;
        let mut logicals = 0u32;
        let mut extended_start = None;
        for spec in partitions {
            if spec.primary && logicals > 0 {
                return Err(error("All primary partitions must be given first"));
            }
            let logical = !spec.primary;
            if logical && extended_start.is_none() {
                if primaries >= 4 {
                    return Err(error("no primary slot left for the extended partition"));
                }
                let start = align_up(free);
                extended_start = Some(start);
                primaries += 1;
                layout.entries.push(Entry {
                    number: primaries,
                    start,
                    end: disk_sectors.saturating_sub(1),
                    kind: EXTENDED,
                    bootable: false,
                    ebr: None,
                });
                free = start;
            }
            // A logical's EBR takes the free sector; its data starts one alignment later.
            let ebr = logical.then(|| align_up(free));
            let start = match ebr {
                Some(ebr) => ebr + ALIGNMENT,
                None => align_up(free),
            };
            let sectors = match spec.size {
                Size::Bytes(bytes) => bytes / SECTOR,
                Size::Percent(percent) => {
                    // A share of what is left, keeping one alignment unit free at the end.
                    let left = disk_sectors.saturating_sub(start + ALIGNMENT);
                    (left as f64 * percent / 100.0) as u64
                }
            };
            if sectors == 0 {
                return Err(error(format!("partition {}: size is zero", spec.name)));
            }
            let end = start + sectors - 1;
            if end >= disk_sectors {
                return Err(error(format!(
                    "partition {} does not fit: it ends at sector {end}, the disk has {disk_sectors}",
                    spec.name
                )));
            }
            let number = if logical {
                logicals += 1;
                4 + logicals
            } else {
                if primaries >= 4 {
                    return Err(error("at most 4 primary partitions"));
                }
                primaries += 1;
                primaries
            };
            layout.entries.push(Entry {
                number,
                start,
                end,
                kind: spec.kind,
                bootable: spec.bootable,
                ebr,
            });
            free = end + 1;
        }
        Ok(layout)
    }

    /// Writes the MBR (with `disk_id`) and every EBR into `image`.
    pub fn write<W: Write + Seek>(&self, image: &mut W, disk_id: u32) -> std::io::Result<()> {
        let mut mbr = [0u8; 512];
        mbr[440..444].copy_from_slice(&disk_id.to_le_bytes());
        for (slot, entry) in self.entries.iter().filter(|e| e.number <= 4).enumerate() {
            write_entry(
                &mut mbr[446 + 16 * slot..][..16],
                entry.bootable,
                entry.kind,
                entry.start,
                entry.end - entry.start + 1,
            );
        }
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        image.seek(SeekFrom::Start(0))?;
        image.write_all(&mbr)?;
        let extended = self
            .entries
            .iter()
            .find(|e| e.kind == EXTENDED && e.number <= 4);
        let logicals: Vec<&Entry> = self.entries.iter().filter(|e| e.number > 4).collect();
        for (index, logical) in logicals.iter().enumerate() {
            let (Some(ebr), Some(extended)) = (logical.ebr, extended) else {
                continue;
            };
            let mut record = [0u8; 512];
            write_entry(
                &mut record[446..462],
                logical.bootable,
                logical.kind,
                logical.start - ebr,
                logical.end - logical.start + 1,
            );
            if let Some(next) = logicals.get(index + 1) {
                let next_ebr = next.ebr.unwrap_or(next.start);
                // The link spans the next EBR and its partition, relative to the extended start.
                write_entry(
                    &mut record[462..478],
                    false,
                    EBR_LINK,
                    next_ebr - extended.start,
                    next.end - next_ebr + 1,
                );
            }
            record[510] = 0x55;
            record[511] = 0xAA;
            image.seek(SeekFrom::Start(ebr * SECTOR))?;
            image.write_all(&record)?;
        }
        Ok(())
    }
}

/// Cylinder/head/sector of `lba`, as the BIOS geometry of 254 heads × 63 sectors gives it,
/// capped at (1023, 254, 63).
fn chs(lba: u64) -> [u8; 3] {
    let (cylinder, head, sector) = if lba / (HEADS * SECTORS_PER_TRACK) > 1023 {
        (1023, 254, 63)
    } else {
        (
            lba / (HEADS * SECTORS_PER_TRACK),
            (lba / SECTORS_PER_TRACK) % HEADS,
            lba % SECTORS_PER_TRACK + 1,
        )
    };
    [
        head as u8,
        (sector as u8) | (((cylinder >> 2) & 0xC0) as u8),
        (cylinder & 0xFF) as u8,
    ]
}

fn write_entry(slot: &mut [u8], bootable: bool, kind: u8, start: u64, sectors: u64) {
    slot[0] = if bootable { 0x80 } else { 0 };
    slot[1..4].copy_from_slice(&chs(start));
    slot[4] = kind;
    slot[5..8].copy_from_slice(&chs(start + sectors - 1));
    slot[8..12].copy_from_slice(&(start as u32).to_le_bytes());
    slot[12..16].copy_from_slice(&(sectors as u32).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const TEN_MIB: Size = Size::Bytes(10 << 20);

    fn part(primary: bool) -> PartitionSpec {
        PartitionSpec {
            name: "p".into(),
            size: TEN_MIB,
            primary,
            bootable: false,
            kind: 0x83,
        }
    }

    fn table(layout: &Layout) -> Vec<(u32, u64, u64, u8)> {
        layout
            .entries
            .iter()
            .map(|e| (e.number, e.start, e.end, e.kind))
            .collect()
    }

    #[test]
    fn upstream_layouts_on_a_one_gib_disk() {
        assert_eq!(table(&Layout::plan(GIB, &[]).expect("plans")), []);
        assert_eq!(
            table(&Layout::plan(GIB, &[part(true)]).expect("plans")),
            [(1, 2048, 22527, 0x83)]
        );
        assert_eq!(
            table(&Layout::plan(GIB, &[part(true), part(true), part(true)]).expect("plans")),
            [
                (1, 2048, 22527, 0x83),
                (2, 22528, 43007, 0x83),
                (3, 43008, 63487, 0x83)
            ]
        );
        assert_eq!(
            table(&Layout::plan(GIB, &[part(false)]).expect("plans")),
            [(1, 2048, 2097151, 0x0f), (5, 4096, 24575, 0x83)]
        );
        let many = Layout::plan(GIB, &vec![part(false); 64]).expect("plans");
        assert_eq!(table(&many)[0], (1, 2048, 2097151, 0x0f));
        for k in 1..=64u64 {
            let start = 4096 + 22528 * (k - 1);
            assert_eq!(
                table(&many)[k as usize],
                (4 + k as u32, start, start + 20479, 0x83)
            );
        }
        let mut mixed = vec![part(true); 3];
        mixed.extend(vec![part(false); 7]);
        let mixed = table(&Layout::plan(GIB, &mixed).expect("plans"));
        assert_eq!(mixed[3], (4, 63488, 2097151, 0x0f));
        let starts: Vec<(u32, u64, u64)> = mixed[4..].iter().map(|e| (e.0, e.1, e.2)).collect();
        assert_eq!(
            starts,
            [
                (5, 65536, 86015),
                (6, 88064, 108543),
                (7, 110592, 131071),
                (8, 133120, 153599),
                (9, 155648, 176127),
                (10, 178176, 198655),
                (11, 200704, 221183)
            ]
        );
        let fat = PartitionSpec {
            kind: 0x0c,
            ..part(true)
        };
        assert_eq!(
            table(&Layout::plan(GIB, &[fat]).expect("plans")),
            [(1, 2048, 22527, 0x0c)]
        );
        let root = PartitionSpec {
            size: Size::Percent(100.0),
            ..part(true)
        };
        assert_eq!(
            table(&Layout::plan(GIB, &[root]).expect("plans")),
            [(1, 2048, 2097152 - 2048 - 1, 0x83)]
        );
    }

    #[test]
    fn primaries_come_first() {
        let error = Layout::plan(GIB, &[part(false), part(true)]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "All primary partitions must be given first"
        );
    }
}
