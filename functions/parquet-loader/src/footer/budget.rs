//! The budget a footer must keep before the parquet crate decodes it: a bounded size, and a
//! schema of bounded depth and element count whose `num_children` fit the elements that follow.
//! The parquet crate builds the schema tree by recursion, one frame per level, and reserves
//! `num_children` slots before it checks them, so a crafted footer would overflow the stack or
//! ask for gigabytes (and release builds abort on either).
//!
//! The schema list is walked here with a small reader of Thrift's compact protocol over the
//! footer's bytes, every length checked against what remains: the parquet crate's own reader is
//! private, and the `thrift` crate allocates a string's claimed length before reading it.

use crate::quarantine::{Refusal, RefusalCode};

/// The largest footer read: ample for thousands of columns in hundreds of row groups (the
/// 1 GB benchmark file's is 12 KB), and at most a few hundred MB once decoded.
pub const MAX_FOOTER_BYTES: u64 = 16 * 1024 * 1024;
/// The deepest schema accepted: BigQuery nests records 15 deep, and a Parquet list adds two
/// levels to its element.
pub const MAX_SCHEMA_DEPTH: usize = 64;
/// The most schema elements (columns and groups) accepted: BigQuery tables hold 10,000 columns.
pub const MAX_SCHEMA_ELEMENTS: usize = 20_000;

/// How deep `skip` follows nested values it does not need.
const MAX_SKIP_DEPTH: u8 = 32;

/// Refuses a footer length over the budget.
pub fn check_footer_length(metadata_len: u64) -> Result<(), Refusal> {
    if metadata_len > MAX_FOOTER_BYTES {
        return Err(over_budget(format!(
            "the footer is {metadata_len} bytes; the loader reads footers of at most \
             {MAX_FOOTER_BYTES} bytes (write fewer row groups or columns per file)"
        )));
    }
    Ok(())
}

/// Checks the schema list of a footer's `FileMetaData` (Thrift compact protocol).
pub fn check_schema(metadata: &[u8]) -> Result<(), Refusal> {
    check_tree(&schema_children(metadata)?)
}

/// The `num_children` of every schema element, in order (`None` for leaves).
fn schema_children(metadata: &[u8]) -> Result<Vec<Option<i32>>, Refusal> {
    let malformed = |detail: String| {
        Refusal::new(
            RefusalCode::NotParquet,
            format!("the footer metadata does not decode: {detail}"),
        )
    };
    let mut reader = Reader {
        bytes: metadata,
        position: 0,
    };
    let mut last_id = 0;
    loop {
        let Some((id, kind)) = reader.field_header(&mut last_id).map_err(malformed)? else {
            return Err(malformed("it has no schema".to_owned()));
        };
        if id != 2 {
            reader.skip(kind, MAX_SKIP_DEPTH).map_err(malformed)?;
            continue;
        }
        let (count, element) = reader.list_header().map_err(malformed)?;
        if kind != LIST || element != STRUCT {
            return Err(malformed("the schema is not a list of elements".to_owned()));
        }
        if count > MAX_SCHEMA_ELEMENTS {
            return Err(over_budget(format!(
                "the schema has {count} elements; the loader reads at most \
                 {MAX_SCHEMA_ELEMENTS}"
            )));
        }
        let mut children = Vec::with_capacity(count);
        for _ in 0..count {
            children.push(reader.schema_element().map_err(malformed)?);
        }
        return Ok(children);
    }
}

/// The tree the elements describe (depth first, each group followed by its children) must close
/// within the list and stay within the depth budget.
fn check_tree(children: &[Option<i32>]) -> Result<(), Refusal> {
    let malformed = |detail: String| Refusal::new(RefusalCode::NotParquet, detail);
    // Children still expected by each open group, outermost first.
    let mut open: Vec<usize> = Vec::new();
    for (index, declared) in children.iter().enumerate() {
        if index > 0 {
            match open.last_mut() {
                Some(expected) => *expected -= 1,
                None => {
                    return Err(malformed(format!(
                        "schema element {index} lies outside the root's children"
                    )));
                }
            }
        }
        let declared = declared.unwrap_or(0);
        let Ok(declared) = usize::try_from(declared) else {
            return Err(malformed(format!(
                "schema element {index} claims {declared} children"
            )));
        };
        let following = children.len() - index - 1;
        if declared > following {
            return Err(malformed(format!(
                "schema element {index} claims {declared} children, but {following} elements \
                 follow it"
            )));
        }
        if declared > 0 {
            open.push(declared);
            if open.len() > MAX_SCHEMA_DEPTH {
                return Err(over_budget(format!(
                    "the schema nests deeper than {MAX_SCHEMA_DEPTH} levels"
                )));
            }
        }
        while open.last() == Some(&0) {
            open.pop();
        }
    }
    if !open.is_empty() {
        return Err(malformed(
            "the schema's groups claim more children than it has elements".to_owned(),
        ));
    }
    Ok(())
}

fn over_budget(detail: String) -> Refusal {
    Refusal::new(RefusalCode::OverBudget, detail)
}

// Thrift compact protocol type ids.
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;

/// A cursor over Thrift compact-protocol bytes; every read checks what remains.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let byte = *self
            .bytes
            .get(self.position)
            .ok_or("the metadata ends early")?;
        self.position += 1;
        Ok(byte)
    }

    fn advance(&mut self, n: u64) -> Result<(), String> {
        let remaining = self.bytes.len() - self.position;
        match usize::try_from(n) {
            Ok(n) if n <= remaining => {
                self.position += n;
                Ok(())
            }
            _ => Err(format!("a value claims {n} bytes where {remaining} remain")),
        }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint longer than 64 bits".to_owned())
    }

    fn zigzag(&mut self) -> Result<i64, String> {
        let raw = self.varint()?;
        Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
    }

    /// The next field's id and type, or `None` at the struct's end.
    fn field_header(&mut self, last_id: &mut i16) -> Result<Option<(i16, u8)>, String> {
        let header = self.byte()?;
        if header == 0 {
            return Ok(None);
        }
        let delta = header >> 4;
        let id = if delta == 0 {
            i16::try_from(self.zigzag()?).map_err(|_| "a field id out of range".to_owned())?
        } else {
            last_id.saturating_add(i16::from(delta))
        };
        *last_id = id;
        Ok(Some((id, header & 0x0f)))
    }

    /// A list's (or set's) element count and element type.
    fn list_header(&mut self) -> Result<(usize, u8), String> {
        let header = self.byte()?;
        let count = match header >> 4 {
            15 => self.varint()?,
            short => u64::from(short),
        };
        let count = usize::try_from(count).map_err(|_| "a list too long".to_owned())?;
        // Every element takes a byte at least: a longer claim cannot be true.
        if count > self.bytes.len() - self.position {
            return Err(format!("a list claims {count} elements in fewer bytes"));
        }
        Ok((count, header & 0x0f))
    }

    /// A `SchemaElement`'s `num_children` (field 5), the other fields skipped.
    fn schema_element(&mut self) -> Result<Option<i32>, String> {
        let mut last_id = 0;
        let mut children = None;
        while let Some((id, kind)) = self.field_header(&mut last_id)? {
            if id == 5 && kind == I32 {
                let value = self.zigzag()?;
                children = Some(
                    i32::try_from(value).map_err(|_| format!("num_children {value} overflows"))?,
                );
            } else {
                self.skip(kind, MAX_SKIP_DEPTH)?;
            }
        }
        Ok(children)
    }

    fn skip(&mut self, kind: u8, depth: u8) -> Result<(), String> {
        let depth = depth
            .checked_sub(1)
            .ok_or("values nested too deep to skip")?;
        match kind {
            BOOL_TRUE | BOOL_FALSE => Ok(()),
            BYTE => self.byte().map(drop),
            I16 | I32 | I64 => self.varint().map(drop),
            DOUBLE => self.advance(8),
            BINARY => {
                let len = self.varint()?;
                self.advance(len)
            }
            LIST | SET => {
                let (count, element) = self.list_header()?;
                for _ in 0..count {
                    // A boolean in a list is one byte, not folded into a header.
                    if matches!(element, BOOL_TRUE | BOOL_FALSE) {
                        self.byte()?;
                    } else {
                        self.skip(element, depth)?;
                    }
                }
                Ok(())
            }
            MAP => {
                let count = self.varint()?;
                if count == 0 {
                    return Ok(());
                }
                let types = self.byte()?;
                for _ in 0..count {
                    self.skip(types >> 4, depth)?;
                    self.skip(types & 0x0f, depth)?;
                }
                Ok(())
            }
            STRUCT => {
                let mut last_id = 0;
                while let Some((_, field)) = self.field_header(&mut last_id)? {
                    self.skip(field, depth)?;
                }
                Ok(())
            }
            other => Err(format!("unknown Thrift type {other}")),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Thrift compact bytes of a `FileMetaData` whose schema elements have these
    /// `num_children` (`None`: a leaf of type INT32), no row groups.
    pub(crate) fn file_metadata(children: &[Option<i32>]) -> Vec<u8> {
        let mut out = vec![0x15, 0x02]; // 1: version = 1
        out.push(0x19); // 2: schema, a list
        list_header(&mut out, children.len(), STRUCT);
        for (index, declared) in children.iter().enumerate() {
            match declared {
                None => out.extend([0x15, 0x02, 0x25, 0x02]), // 1: type INT32, 3: OPTIONAL
                Some(_) if index > 0 => out.extend([0x35, 0x02]), // 3: OPTIONAL
                Some(_) => {}
            }
            let name = format!("c{index}");
            let last = if declared.is_none() || index > 0 {
                3
            } else {
                0
            };
            out.push(((4 - last) << 4) | BINARY); // 4: name
            varint(&mut out, name.len() as u64);
            out.extend(name.as_bytes());
            if let Some(n) = declared {
                out.push(0x15); // 5: num_children
                varint(
                    &mut out,
                    ((i64::from(*n) << 1) ^ (i64::from(*n) >> 63)) as u64,
                );
            }
            out.push(0);
        }
        out.extend([0x16, 0x00]); // 3: num_rows = 0
        out.extend([0x19, 0x0c]); // 4: row_groups, an empty list
        out.push(0);
        out
    }

    fn list_header(out: &mut Vec<u8>, count: usize, kind: u8) {
        if count < 15 {
            out.push(((count as u8) << 4) | kind);
        } else {
            out.push(0xf0 | kind);
            varint(out, count as u64);
        }
    }

    fn varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    /// A chain of `depth` groups ending in one leaf.
    pub(crate) fn nested(depth: usize) -> Vec<Option<i32>> {
        let mut children = vec![Some(1); depth];
        children.push(None);
        children
    }

    #[test]
    fn a_well_formed_schema_passes_and_decodes() {
        let schema = [Some(2), None, Some(1), None];
        let bytes = file_metadata(&schema);
        assert_eq!(schema_children(&bytes).unwrap(), schema);
        check_schema(&bytes).unwrap();
        let metadata =
            parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&bytes).unwrap();
        assert_eq!(metadata.file_metadata().schema_descr().num_columns(), 2);
    }

    #[test]
    fn deep_wide_and_inconsistent_schemas_are_refused() {
        let refused =
            |children: &[Option<i32>]| check_schema(&file_metadata(children)).unwrap_err();
        let deep = refused(&nested(MAX_SCHEMA_DEPTH + 1));
        assert_eq!(deep.reason, RefusalCode::OverBudget, "{}", deep.detail);
        assert!(deep.detail.contains("deeper than 64"), "{}", deep.detail);
        check_schema(&file_metadata(&nested(MAX_SCHEMA_DEPTH))).unwrap();

        let huge = refused(&[Some(i32::MAX), None]);
        assert_eq!(huge.reason, RefusalCode::NotParquet);
        assert!(
            huge.detail.contains("claims 2147483647 children"),
            "{}",
            huge.detail
        );
        assert_eq!(refused(&[Some(-1)]).reason, RefusalCode::NotParquet);
        assert_eq!(refused(&[Some(3), None]).reason, RefusalCode::NotParquet);
        assert_eq!(
            refused(&[Some(1), None, None]).reason,
            RefusalCode::NotParquet
        );

        let mut wide = vec![Some(i32::try_from(MAX_SCHEMA_ELEMENTS).unwrap())];
        wide.extend(std::iter::repeat_n(None, MAX_SCHEMA_ELEMENTS));
        let wide = check_schema(&file_metadata(&wide)).unwrap_err();
        assert_eq!(wide.reason, RefusalCode::OverBudget);
        assert!(wide.detail.contains("20001 elements"), "{}", wide.detail);
    }

    #[test]
    fn lengths_beyond_the_bytes_are_refused_not_allocated() {
        // A list claiming a billion elements, and a name claiming 4 GB, in a few bytes.
        let mut list = vec![0x19, 0xfc];
        varint(&mut list, 1 << 30);
        let detail = |bytes: &[u8]| schema_children(bytes).unwrap_err().detail;
        assert!(detail(&list).contains("elements in fewer bytes"));
        let mut name = vec![0x19, 0x1c, 0x48];
        varint(&mut name, 1 << 32);
        assert!(detail(&name).contains("claims 4294967296 bytes"));
        assert!(detail(&[]).contains("ends early"));
        check_footer_length(MAX_FOOTER_BYTES).unwrap();
        assert_eq!(
            check_footer_length(MAX_FOOTER_BYTES + 1)
                .unwrap_err()
                .reason,
            RefusalCode::OverBudget
        );
    }
}
