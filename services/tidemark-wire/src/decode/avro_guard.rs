//! A bounds check of an Avro datum before apache-avro decodes it.
//!
//! apache-avro reserves memory for an array or map block from the count written in the data,
//! bounded only by a byte limit it compares against an *item* count: an 83-byte record found by
//! the fuzzer made it reserve 3.6 GB. This walk reads the datum under the schema without
//! allocating and rejects any length or count larger than the bytes that remain, so a corrupt
//! record becomes a dead letter instead of an out-of-memory kill.

use std::collections::HashMap;

use apache_avro::Schema;

/// Named types of a schema by full name, for resolving references during the walk.
pub(crate) type Names = HashMap<String, Schema>;

pub(crate) fn collect_names(schema: &Schema, names: &mut Names) {
    match schema {
        // A record seen before is not walked again (recursive types).
        Schema::Record(r)
            if names
                .insert(r.name.fullname(None), schema.clone())
                .is_none() =>
        {
            for f in &r.fields {
                collect_names(&f.schema, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(e.name.fullname(None), schema.clone());
        }
        Schema::Fixed(f) => {
            names.insert(f.name.fullname(None), schema.clone());
        }
        Schema::Array(a) => collect_names(&a.items, names),
        Schema::Map(m) => collect_names(&m.types, names),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect_names(v, names)),
        _ => {}
    }
}

const MAX_DEPTH: usize = 64;

struct Cursor<'a> {
    buf: &'a [u8],
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn byte(&mut self) -> Result<u8, String> {
        let (&b, rest) = self.buf.split_first().ok_or("datum ends early")?;
        self.buf = rest;
        Ok(b)
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        if n > self.buf.len() {
            return Err(format!("needs {n} bytes, {} remain", self.buf.len()));
        }
        self.buf = &self.buf[n..];
        Ok(())
    }

    /// A zig-zag varint long.
    fn long(&mut self) -> Result<i64, String> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    /// A length that must fit in what remains.
    fn len(&mut self, what: &str) -> Result<usize, String> {
        let n = self.long()?;
        let n = usize::try_from(n).map_err(|_| format!("negative {what} length {n}"))?;
        if n > self.remaining() {
            return Err(format!("{what} of {n} bytes, {} remain", self.remaining()));
        }
        Ok(n)
    }

    /// Array and map blocks: a count (negative: followed by the block's byte size), items.
    fn blocks(
        &mut self,
        names: &Names,
        depth: usize,
        mut item: impl FnMut(&mut Self, &Names, usize) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let mut count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                count = count.checked_neg().ok_or("block count overflows")?;
                self.long()?;
            }
            // Every Connect item takes at least one byte, so a count beyond the bytes left is corrupt.
            if count as u64 > self.remaining() as u64 {
                return Err(format!(
                    "block of {count} items, {} bytes remain",
                    self.remaining()
                ));
            }
            for _ in 0..count {
                item(self, names, depth + 1)?;
            }
        }
    }

    fn walk(&mut self, schema: &Schema, names: &Names, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("nesting deeper than 64".into());
        }
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => self.skip(1),
            Schema::Int | Schema::Long | Schema::Enum(_) => self.long().map(drop),
            Schema::Float => self.skip(4),
            Schema::Double => self.skip(8),
            Schema::Bytes | Schema::String => {
                let n = self.len("string/bytes")?;
                self.skip(n)
            }
            Schema::Fixed(f) => self.skip(f.size),
            Schema::Array(a) => self.blocks(names, depth, |c, n, d| c.walk(&a.items, n, d)),
            Schema::Map(m) => self.blocks(names, depth, |c, n, d| {
                let k = c.len("map key")?;
                c.skip(k)?;
                c.walk(&m.types, n, d)
            }),
            Schema::Union(u) => {
                let i = self.long()?;
                let branch = usize::try_from(i)
                    .ok()
                    .and_then(|i| u.variants().get(i))
                    .ok_or_else(|| format!("union branch {i} does not exist"))?;
                self.walk(branch, names, depth + 1)
            }
            Schema::Record(r) => r
                .fields
                .iter()
                .try_for_each(|f| self.walk(&f.schema, names, depth + 1)),
            Schema::Ref { name } => {
                let target = names
                    .get(&name.fullname(None))
                    .ok_or_else(|| format!("unknown type reference {}", name.fullname(None)))?;
                self.walk(target, names, depth + 1)
            }
            // Logical types are stripped before parsing (see avro_schema); leave anything else to apache-avro.
            _ => Ok(()),
        }
    }
}

/// Checks that `body` is a plausible datum of `schema`: every length and count fits the bytes.
pub(crate) fn check(schema: &Schema, names: &Names, body: &[u8]) -> Result<(), String> {
    Cursor { buf: body }.walk(schema, names, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_block_counts_are_rejected_before_allocation() {
        let schema = Schema::parse_str(r#"{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"array","items":"long"}}]}"#).unwrap();
        let mut names = Names::new();
        collect_names(&schema, &mut names);
        // count = 64M (zig-zag varint), then nothing.
        let body = [0x80, 0x80, 0x80, 0x40];
        assert!(check(&schema, &names, &body).unwrap_err().contains("items"));
        // A valid datum: 2 items (1, 2), end of blocks.
        assert_eq!(check(&schema, &names, &[4, 2, 4, 0]), Ok(()));
    }
}
