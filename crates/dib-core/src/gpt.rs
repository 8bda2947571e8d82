//! GPT partition tables, laid out as diskimage-builder's `sgdisk -n k:0:+<MiB>M` calls place
//! them (sizes floored to MiB, `N%` a share of the disk less 2 MiB and the partitions before)
//! and written in Rust: protective MBR, primary and backup headers and entry arrays with
//! their CRC32s. No loop device, no sgdisk.

use std::io::{Seek, SeekFrom, Write};

use crate::elements::Error;
use crate::mbr::{ALIGNMENT, SECTOR};
use crate::size::Size;

const MIB_SECTORS: u64 = (1 << 20) / SECTOR;
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;
/// Sectors the 128-entry array takes.
const ENTRY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;

/// A partition as the configuration asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct GptPartitionSpec {
    pub name: String,
    pub size: Size,
    /// sgdisk's type code (`EF00`, `EF02`, `8300`, …).
    pub type_code: String,
    pub guid: [u8; 16],
}

/// A placed partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptEntry {
    pub number: u32,
    pub first: u64,
    pub last: u64,
    pub type_guid: [u8; 16],
    pub guid: [u8; 16],
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptLayout {
    pub disk_sectors: u64,
    pub disk_guid: [u8; 16],
    pub entries: Vec<GptEntry>,
}

/// A GUID from its text form, in GPT's on-disk byte order (first three fields little-endian).
pub fn guid_bytes(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut raw = [0u8; 16];
    for (i, byte) in raw.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    raw[0..4].reverse();
    raw[4..6].reverse();
    raw[6..8].reverse();
    Some(raw)
}

/// The partition type GUID of an sgdisk type code.
pub fn type_guid(code: &str) -> Option<[u8; 16]> {
    let guid = match code.to_ascii_uppercase().as_str() {
        "EF00" => "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
        "EF01" => "024DEE41-33E7-11D3-9D69-0008C781F39F",
        "EF02" => "21686148-6449-6E6F-744E-656564454649",
        "0700" => "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
        "8200" => "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
        "8300" => "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
        "8304" => "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
        "8E00" => "E6D6D379-F507-44C2-A23C-238F2A3DF928",
        "FD00" => "A19D880F-05FC-4D3B-A006-743F0F84911E",
        "4100" => "9E1A2D38-C612-4316-AA26-8B49521E5A8B",
        _ => return None,
    };
    guid_bytes(guid)
}

impl GptLayout {
    /// Places `partitions` on a disk of `disk_bytes`.
    pub fn plan(
        disk_bytes: u64,
        disk_guid: [u8; 16],
        partitions: &[GptPartitionSpec],
    ) -> Result<GptLayout, Error> {
        let disk_sectors = disk_bytes / SECTOR;
        let last_usable = disk_sectors
            .checked_sub(1 + ENTRY_SECTORS + 1)
            .ok_or_else(|| Error::Layout("disk too small for a GPT".to_owned()))?;
        let free_mib = (disk_bytes >> 20).saturating_sub(2);
        let mut used_mib = 0u64;
        let mut next = ALIGNMENT;
        let mut entries = Vec::new();
        for (index, spec) in partitions.iter().enumerate() {
            let mib = match spec.size {
                Size::Bytes(bytes) => bytes >> 20,
                Size::Percent(percent) => ((free_mib - used_mib) as f64 * percent / 100.0) as u64,
            };
            if mib == 0 {
                return Err(Error::Layout(format!(
                    "partition {}: smaller than 1 MiB",
                    spec.name
                )));
            }
            let first = next.div_ceil(ALIGNMENT) * ALIGNMENT;
            let last = first + mib * MIB_SECTORS - 1;
            if last > last_usable {
                return Err(Error::Layout(format!(
                    "partition {} does not fit: it ends at sector {last}, the last usable is {last_usable}",
                    spec.name
                )));
            }
            let type_guid = type_guid(&spec.type_code).ok_or_else(|| {
                Error::Layout(format!(
                    "partition {}: unknown type code {}",
                    spec.name, spec.type_code
                ))
            })?;
            if spec.name.encode_utf16().count() > 36 {
                return Err(Error::Layout(format!(
                    "partition name {:?} is longer than 36 characters",
                    spec.name
                )));
            }
            entries.push(GptEntry {
                number: index as u32 + 1,
                first,
                last,
                type_guid,
                guid: spec.guid,
                name: spec.name.clone(),
            });
            used_mib += mib;
            next = last + 1;
        }
        Ok(GptLayout {
            disk_sectors,
            disk_guid,
            entries,
        })
    }

    fn entry_array(&self) -> Vec<u8> {
        let mut array = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
        for entry in &self.entries {
            let slot = &mut array[((entry.number as u64 - 1) * ENTRY_SIZE) as usize..]
                [..ENTRY_SIZE as usize];
            slot[0..16].copy_from_slice(&entry.type_guid);
            slot[16..32].copy_from_slice(&entry.guid);
            slot[32..40].copy_from_slice(&entry.first.to_le_bytes());
            slot[40..48].copy_from_slice(&entry.last.to_le_bytes());
            for (i, unit) in entry.name.encode_utf16().enumerate() {
                slot[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
            }
        }
        array
    }

    fn header(&self, this: u64, other: u64, entries_at: u64, array_crc: u32) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&this.to_le_bytes());
        h[32..40].copy_from_slice(&other.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + ENTRY_SECTORS).to_le_bytes());
        h[48..56].copy_from_slice(&(self.disk_sectors - 2 - ENTRY_SECTORS).to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid);
        h[72..80].copy_from_slice(&entries_at.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&array_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Writes the protective MBR, both headers and both entry arrays into `image`.
    pub fn write<W: Write + Seek>(&self, image: &mut W) -> std::io::Result<()> {
        let mut mbr = [0u8; 512];
        let sectors = (self.disk_sectors - 1).min(u64::from(u32::MAX)) as u32;
        mbr[446 + 1..446 + 4].copy_from_slice(&[0x00, 0x02, 0x00]);
        mbr[446 + 4] = 0xEE;
        mbr[446 + 5..446 + 8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
        mbr[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        mbr[446 + 12..446 + 16].copy_from_slice(&sectors.to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        let array = self.entry_array();
        let array_crc = crc32fast::hash(&array);
        let last = self.disk_sectors - 1;
        let backup_array = last - ENTRY_SECTORS;
        for (at, bytes) in [
            (0, mbr.as_slice()),
            (1, &self.header(1, last, 2, array_crc)),
            (2, &array),
            (backup_array, &array),
            (last, &self.header(last, 1, backup_array, array_crc)),
        ] {
            image.seek(SeekFrom::Start(at * SECTOR))?;
            image.write_all(bytes)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, size: Size, code: &str, n: u8) -> GptPartitionSpec {
        GptPartitionSpec {
            name: name.into(),
            size,
            type_code: code.into(),
            guid: [n; 16],
        }
    }

    #[test]
    fn upstream_gpt_efi_layout() {
        // ESP 8 MiB, BSP 8 MiB, root 100%: upstream's sgdisk call gives the root +1006M.
        let layout = GptLayout::plan(
            1 << 30,
            [9; 16],
            &[
                spec("ESP", Size::Bytes(8 << 20), "EF00", 1),
                spec("BSP", Size::Bytes(8 << 20), "EF02", 2),
                spec("Root Part", Size::Percent(100.0), "8300", 3),
            ],
        )
        .expect("plans");
        let sizes: Vec<(u64, u64)> = layout
            .entries
            .iter()
            .map(|e| (e.first, (e.last - e.first + 1) / MIB_SECTORS))
            .collect();
        assert_eq!(sizes, [(2048, 8), (18432, 8), (34816, 1006)]);
        assert_eq!(
            guid_bytes("C12A7328-F81F-11D2-BA4B-00A0C93EC93B").expect("guid")[..4],
            [0x28, 0x73, 0x2A, 0xC1]
        );
    }
}
