//! pprof's `profile.proto` (github.com/google/pprof/blob/main/proto/profile.proto), the
//! messages written out with prost's derive macros (no protoc), and the gzip'ed encoding
//! `go tool pprof`, Pyroscope and Alloy read.

use std::{collections::HashMap, io::Write as _};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
    #[prost(int64, tag = "3")]
    pub num: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Mapping {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    #[prost(int64, tag = "5")]
    pub filename: i64,
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    #[prost(uint64, tag = "3")]
    pub address: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
}

/// The sample types, in the order of every sample's values (Go's heap profile order, then
/// the faults).
pub const SAMPLE_TYPES: [(&str, &str); 5] = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
    ("faults", "count"),
];

/// Builds a profile: strings, functions, locations and mappings deduplicated.
pub struct Builder {
    profile: Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<std::sync::Arc<str>, u64>,
    /// Location id per (mapping id, address).
    locations: HashMap<(u64, u64), u64>,
    mappings: HashMap<u32, u64>,
}

impl Builder {
    /// `default_type`: the sample type a viewer shows first (e.g. `inuse_space`).
    pub fn new(default_type: &str, time_nanos: i64) -> Builder {
        let mut b = Builder {
            profile: Profile {
                time_nanos,
                ..Profile::default()
            },
            strings: HashMap::new(),
            functions: HashMap::new(),
            locations: HashMap::new(),
            mappings: HashMap::new(),
        };
        b.string("");
        for (ty, unit) in SAMPLE_TYPES {
            let vt = ValueType {
                r#type: b.string(ty),
                unit: b.string(unit),
            };
            b.profile.sample_type.push(vt);
        }
        b.profile.period_type = Some(ValueType {
            r#type: b.string("space"),
            unit: b.string("bytes"),
        });
        b.profile.default_sample_type = b.string(default_type);
        b
    }

    pub fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_owned());
        self.strings.insert(s.to_owned(), i);
        i
    }

    /// The mapping of file `file` (table id) named `name`.
    pub fn mapping(&mut self, file: u32, name: &str) -> u64 {
        if let Some(&id) = self.mappings.get(&file) {
            return id;
        }
        let id = self.profile.mapping.len() as u64 + 1;
        let filename = self.string(name);
        self.profile.mapping.push(Mapping {
            id,
            memory_start: 0,
            memory_limit: u64::MAX,
            file_offset: 0,
            filename,
            build_id: 0,
            has_functions: true,
        });
        self.mappings.insert(file, id);
        id
    }

    /// The location of `address` (a file offset) in `mapping` (0: none), in `function`.
    pub fn location(&mut self, mapping: u64, address: u64, function: &std::sync::Arc<str>) -> u64 {
        if let Some(&id) = self.locations.get(&(mapping, address)) {
            return id;
        }
        let function_id = match self.functions.get(function) {
            Some(&id) => id,
            None => {
                let id = self.profile.function.len() as u64 + 1;
                let name = self.string(function);
                self.profile.function.push(Function {
                    id,
                    name,
                    system_name: name,
                    filename: 0,
                });
                self.functions.insert(function.clone(), id);
                id
            }
        };
        let id = self.profile.location.len() as u64 + 1;
        self.profile.location.push(Location {
            id,
            mapping_id: mapping,
            address,
            line: vec![Line {
                function_id,
                line: 0,
            }],
        });
        self.locations.insert((mapping, address), id);
        id
    }

    /// One sample: the stack (location ids, leaf first), the values in `SAMPLE_TYPES` order
    /// and numeric and string labels.
    pub fn sample(&mut self, locations: Vec<u64>, values: [i64; 5], labels: &[(&str, Label)]) {
        let label = labels
            .iter()
            .map(|(key, l)| Label {
                key: self.string(key),
                ..l.clone()
            })
            .collect();
        self.profile.sample.push(Sample {
            location_id: locations,
            value: values.to_vec(),
            label,
        });
    }

    /// The profile, protobuf-encoded and gzip'ed.
    pub fn finish(self) -> Vec<u8> {
        use prost::Message as _;
        let raw = self.profile.encode_to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        // Writing to a Vec cannot fail.
        let _ = gz.write_all(&raw);
        gz.finish().unwrap_or_default()
    }
}

/// Decodes a gzip'ed profile (tests, `tracer` tools reading their own output).
pub fn decode(gz: &[u8]) -> Result<Profile, String> {
    use prost::Message as _;
    use std::io::Read as _;
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut raw)
        .map_err(|e| format!("not gzip: {e}"))?;
    Profile::decode(&*raw).map_err(|e| format!("not a profile: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_reads_back_with_shared_strings_functions_and_locations() {
        let mut b = Builder::new("inuse_space", 7);
        let f: std::sync::Arc<str> = "grow".into();
        let m = b.mapping(3, "/bin/x");
        let l1 = b.location(m, 0x10, &f);
        let l2 = b.location(m, 0x10, &f);
        let l3 = b.location(m, 0x20, &f);
        assert_eq!(l1, l2, "one location per address");
        b.sample(
            vec![l1, l3],
            [1, 4096, 1, 4096, 0],
            &[(
                "pid",
                Label {
                    num: 42,
                    ..Default::default()
                },
            )],
        );
        let p = decode(&b.finish()).unwrap();
        let s = |i: i64| p.string_table[i as usize].as_str();
        assert_eq!(s(0), "", "pprof wants the empty string first");
        let types: Vec<&str> = p.sample_type.iter().map(|t| s(t.r#type)).collect();
        assert_eq!(
            types,
            [
                "alloc_objects",
                "alloc_space",
                "inuse_objects",
                "inuse_space",
                "faults"
            ]
        );
        assert_eq!(s(p.default_sample_type), "inuse_space");
        assert_eq!(p.function.len(), 1);
        assert_eq!(p.location.len(), 2);
        assert_eq!(p.sample[0].value, [1, 4096, 1, 4096, 0]);
        assert_eq!(s(p.sample[0].label[0].key), "pid");
        assert_eq!(s(p.mapping[0].filename), "/bin/x");
        assert!(decode(b"not gzip").is_err());
    }
}
