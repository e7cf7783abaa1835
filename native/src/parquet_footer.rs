//! Joining the footers of one-group Parquet files into the footer of one file
//! (udrfs/parquet/splice.py says why and how the bytes are laid out).
//!
//! A footer is a Thrift `FileMetaData` in the compact protocol. It is decoded into a tree that
//! keeps every field in order with its wire type, so writing the tree back gives the same
//! bytes; joining changes only the row groups' offsets and ordinals and the row count. Field
//! ids are those of parquet.thrift.

use crate::error::{Error, Result};

// Compact-protocol type codes.
const TRUE: u8 = 1;
const FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const STRUCT: u8 = 12;

// parquet.thrift field ids of what joining changes.
const FILE_NUM_ROWS: i16 = 3;
const FILE_ROW_GROUPS: i16 = 4;
const GROUP_COLUMNS: i16 = 1;
const GROUP_FILE_OFFSET: i16 = 5;
const GROUP_ORDINAL: i16 = 7;
const CHUNK_META: i16 = 3;
// ColumnChunk: file offset, offset index, column index.
const CHUNK_OFFSETS: [i16; 3] = [2, 4, 6];
// ColumnMetaData: data page, index page, dictionary page, bloom filter.
const META_OFFSETS: [i16; 4] = [9, 10, 11, 14];

#[derive(Clone, Debug)]
enum Value<'a> {
    Bool(bool),
    Byte(u8),
    Int(i64),      // i16, i32 or i64: the field's type says which
    Raw(&'a [u8]), // a double's 8 bytes
    Binary(&'a [u8]),
    List { element: u8, items: Vec<Value<'a>> },
    Struct(Vec<Field<'a>>),
}

#[derive(Clone, Debug)]
struct Field<'a> {
    id: i16,
    kind: u8,
    value: Value<'a>,
}

fn bad(what: &str) -> Error {
    Error::Invalid(format!("not a Parquet footer: {what}"))
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or_else(|| bad("it ends inside a value"))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| bad("it ends inside a value"))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut result = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            result |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(result);
            }
        }
        Err(bad("a varint is too long"))
    }

    fn zigzag(&mut self) -> Result<i64> {
        let n = self.varint()?;
        Ok((n >> 1) as i64 ^ -((n & 1) as i64))
    }

    fn value(&mut self, kind: u8, depth: usize) -> Result<Value<'a>> {
        if depth > 64 {
            return Err(bad("it nests too deep"));
        }
        Ok(match kind {
            BYTE => Value::Byte(self.byte()?),
            I16 | I32 | I64 => Value::Int(self.zigzag()?),
            DOUBLE => Value::Raw(self.take(8)?),
            BINARY => {
                let n = usize::try_from(self.varint()?).map_err(|_| bad("a length is too big"))?;
                Value::Binary(self.take(n)?)
            }
            STRUCT => Value::Struct(self.fields(depth + 1)?),
            LIST | SET => {
                let header = self.byte()?;
                let element = header & 0x0F;
                let mut size = u64::from(header >> 4);
                if size == 15 {
                    size = self.varint()?;
                }
                if size > (self.data.len() - self.pos) as u64 {
                    return Err(bad("a list is longer than the footer"));
                }
                let mut items = Vec::with_capacity(size as usize);
                for _ in 0..size {
                    items.push(if element == TRUE || element == FALSE {
                        Value::Byte(self.byte()?)
                    } else {
                        self.value(element, depth + 1)?
                    });
                }
                Value::List { element, items }
            }
            other => return Err(bad(&format!("unexpected Thrift type {other}"))),
        })
    }

    fn fields(&mut self, depth: usize) -> Result<Vec<Field<'a>>> {
        let mut fields = Vec::new();
        let mut last: i16 = 0;
        loop {
            let header = self.byte()?;
            if header == 0 {
                return Ok(fields);
            }
            let kind = header & 0x0F;
            let delta = i16::from(header >> 4);
            let id = if delta != 0 {
                last.checked_add(delta)
                    .ok_or_else(|| bad("a field id overflows"))?
            } else {
                i16::try_from(self.zigzag()?).map_err(|_| bad("a field id is out of range"))?
            };
            let value = match kind {
                TRUE => Value::Bool(true),
                FALSE => Value::Bool(false),
                _ => self.value(kind, depth)?,
            };
            fields.push(Field { id, kind, value });
            last = id;
        }
    }
}

struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.out.push((n as u8 & 0x7F) | 0x80);
            n >>= 7;
        }
        self.out.push(n as u8);
    }

    fn zigzag(&mut self, n: i64) {
        self.varint(((n << 1) ^ (n >> 63)) as u64);
    }

    fn value(&mut self, value: &Value<'_>) {
        match value {
            Value::Bool(b) => self.out.push(if *b { TRUE } else { FALSE }),
            Value::Byte(b) => self.out.push(*b),
            Value::Int(n) => self.zigzag(*n),
            Value::Raw(bytes) => self.out.extend_from_slice(bytes),
            Value::Binary(bytes) => {
                self.varint(bytes.len() as u64);
                self.out.extend_from_slice(bytes);
            }
            Value::Struct(fields) => self.fields(fields),
            Value::List { element, items, .. } => {
                if items.len() < 15 {
                    self.out.push((items.len() as u8) << 4 | element);
                } else {
                    self.out.push(0xF0 | element);
                    self.varint(items.len() as u64);
                }
                for item in items {
                    self.value(item);
                }
            }
        }
    }

    fn fields(&mut self, fields: &[Field<'_>]) {
        let mut last: i16 = 0;
        for f in fields {
            let kind = match f.value {
                Value::Bool(true) => TRUE,
                Value::Bool(false) => FALSE,
                _ => f.kind,
            };
            let delta = i32::from(f.id) - i32::from(last);
            if (1..=15).contains(&delta) {
                self.out.push((delta as u8) << 4 | kind);
            } else {
                self.out.push(kind);
                self.zigzag(i64::from(f.id));
            }
            if !matches!(f.value, Value::Bool(_)) {
                self.value(&f.value);
            }
            last = f.id;
        }
        self.out.push(0);
    }
}

fn field_mut<'f, 'a>(fields: &'f mut [Field<'a>], id: i16) -> Result<&'f mut Field<'a>> {
    fields
        .iter_mut()
        .find(|f| f.id == id)
        .ok_or_else(|| bad(&format!("a struct lacks field {id}")))
}

/// Adds `shift` to the non-zero i64 fields among `ids`.
fn shift_offsets(fields: &mut [Field<'_>], ids: &[i16], shift: i64) {
    for f in fields
        .iter_mut()
        .filter(|f| ids.contains(&f.id) && f.kind == I64)
    {
        if let Value::Int(n) = &mut f.value {
            if *n != 0 {
                *n += shift;
            }
        }
    }
}

/// A row group of a one-group file, as the `ordinal`-th group `shift` bytes further on.
fn move_group(group: &mut Value<'_>, shift: i64, ordinal: i64) -> Result<()> {
    let Value::Struct(fields) = group else {
        return Err(bad("a row group is not a struct"));
    };
    let Value::List { items, .. } = &mut field_mut(fields, GROUP_COLUMNS)?.value else {
        return Err(bad("a row group's columns are not a list"));
    };
    for chunk in items.iter_mut() {
        let Value::Struct(chunk) = chunk else {
            return Err(bad("a column chunk is not a struct"));
        };
        shift_offsets(chunk, &CHUNK_OFFSETS, shift);
        if let Some(meta) = chunk.iter_mut().find(|f| f.id == CHUNK_META) {
            if let Value::Struct(meta) = &mut meta.value {
                shift_offsets(meta, &META_OFFSETS, shift);
            }
        }
    }
    shift_offsets(fields, &[GROUP_FILE_OFFSET], shift);
    if let Some(f) = fields.iter_mut().find(|f| f.id == GROUP_ORDINAL) {
        f.value = Value::Int(ordinal);
    }
    Ok(())
}

/// The `FileMetaData` of a file holding the row groups of several files in order: `parts`
/// are each file's `FileMetaData` bytes and how far its row groups' bytes moved. The other
/// fields (schema, key-value metadata, ...) are the last part's.
pub fn join_footers(parts: &[(&[u8], i64)]) -> Result<Vec<u8>> {
    let mut groups = Vec::new();
    let mut rows: i64 = 0;
    let mut last = None;
    for &(footer, shift) in parts {
        let mut reader = Reader {
            data: footer,
            pos: 0,
        };
        let mut meta = reader.fields(0)?;
        if reader.pos != footer.len() {
            return Err(bad("it has trailing bytes"));
        }
        let Value::Int(n) = field_mut(&mut meta, FILE_NUM_ROWS)?.value else {
            return Err(bad("its row count is not an integer"));
        };
        rows = rows
            .checked_add(n)
            .ok_or_else(|| bad("the row count overflows"))?;
        let Value::List { items, .. } = &mut field_mut(&mut meta, FILE_ROW_GROUPS)?.value else {
            return Err(bad("its row groups are not a list"));
        };
        for mut group in std::mem::take(items) {
            move_group(&mut group, shift, groups.len() as i64)?;
            groups.push(group);
        }
        last = Some(meta);
    }
    let mut meta = last.ok_or_else(|| Error::Invalid("nothing to join".into()))?;
    field_mut(&mut meta, FILE_NUM_ROWS)?.value = Value::Int(rows);
    if let Value::List { items, .. } = &mut field_mut(&mut meta, FILE_ROW_GROUPS)?.value {
        *items = groups;
    }
    let mut writer = Writer { out: Vec::new() };
    writer.fields(&meta);
    Ok(writer.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FileMetaData with `groups` row groups of one column each; offsets from `base`.
    fn footer(groups: usize, base: i64, rows: i64) -> Vec<u8> {
        let column = |offset: i64| {
            Value::Struct(vec![
                Field {
                    id: 2,
                    kind: I64,
                    value: Value::Int(0),
                },
                Field {
                    id: 3,
                    kind: STRUCT,
                    value: Value::Struct(vec![
                        Field {
                            id: 1,
                            kind: I32,
                            value: Value::Int(2),
                        },
                        Field {
                            id: 9,
                            kind: I64,
                            value: Value::Int(offset),
                        },
                        Field {
                            id: 12,
                            kind: STRUCT,
                            value: Value::Struct(vec![Field {
                                id: 5,
                                kind: BINARY,
                                value: Value::Binary(b"max"),
                            }]),
                        },
                    ]),
                },
            ])
        };
        let group = |i: i64| {
            Value::Struct(vec![
                Field {
                    id: 1,
                    kind: LIST,
                    value: Value::List {
                        element: STRUCT,
                        items: vec![column(base + i * 10)],
                    },
                },
                Field {
                    id: 3,
                    kind: I64,
                    value: Value::Int(rows),
                },
                Field {
                    id: 5,
                    kind: I64,
                    value: Value::Int(base + i * 10),
                },
                Field {
                    id: 7,
                    kind: I16,
                    value: Value::Int(i),
                },
            ])
        };
        let meta = vec![
            Field {
                id: 1,
                kind: I32,
                value: Value::Int(2),
            },
            Field {
                id: 3,
                kind: I64,
                value: Value::Int(rows * groups as i64),
            },
            Field {
                id: 4,
                kind: LIST,
                value: Value::List {
                    element: STRUCT,
                    items: (0..groups as i64).map(group).collect(),
                },
            },
            Field {
                id: 6,
                kind: BINARY,
                value: Value::Binary(b"writer"),
            },
            Field {
                id: 8,
                kind: TRUE,
                value: Value::Bool(true),
            },
        ];
        let mut w = Writer { out: Vec::new() };
        w.fields(&meta);
        w.out
    }

    #[test]
    fn a_footer_reads_and_writes_back_to_the_same_bytes() {
        let bytes = footer(20, 4, 7);
        assert_eq!(join_footers(&[(&bytes, 0)]).unwrap(), bytes);
    }

    #[test]
    fn joined_groups_are_moved_renumbered_and_counted() {
        // 20 one-group files whose groups are 10 bytes long: the same as one 20-group file.
        let parts: Vec<Vec<u8>> = (0..20).map(|_| footer(1, 4, 7)).collect();
        let shifted: Vec<(&[u8], i64)> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_slice(), 10 * i as i64))
            .collect();
        assert_eq!(join_footers(&shifted).unwrap(), footer(20, 4, 7));
    }

    #[test]
    fn what_is_not_a_footer_is_refused() {
        let bytes = footer(2, 4, 7);
        let err = join_footers(&[(&bytes[..bytes.len() - 3], 0)]).unwrap_err();
        assert!(err.to_string().contains("ends inside a value"), "{err}");
        let err = join_footers(&[(&[0x1F, 0x00], 0)]).unwrap_err();
        assert!(
            err.to_string().contains("unexpected Thrift type 15"),
            "{err}"
        );
        assert!(join_footers(&[]).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(join_footers(&[(&trailing, 0)])
            .unwrap_err()
            .to_string()
            .contains("trailing"));
    }
}
