//! Reading one Rhai rule file: compile, run its top level once under the
//! sandbox, take its metadata map, and check each field with a position.

use std::sync::Arc;

use rhai::{Engine, Scope, AST};
use serde_json::{Map, Value};

use crate::error::{LoadError, LoadErrorKind, ScriptErrorKind};
use crate::sandbox::{self, DeadlineGuard, Limits, Script};

/// Which part of a rule set a file belongs to, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Healing,
    Interop,
    Flags,
}

impl FileKind {
    /// `healing/x.rhai`, `rules/interop/y.rhai`, `/abs/rules/flags/z.rhai` … :
    /// the kind is the name of the folder the file sits in.
    pub fn of_path(path: &str) -> Option<FileKind> {
        let path = path.replace('\\', "/");
        if !path.ends_with(".rhai") {
            return None;
        }
        let mut parts = path.rsplit('/');
        parts.next()?;
        match parts.next()? {
            "healing" => Some(FileKind::Healing),
            "interop" => Some(FileKind::Interop),
            "flags" => Some(FileKind::Flags),
            _ => None,
        }
    }

    /// The variable a file of this kind declares its metadata in.
    pub fn variable(self) -> &'static str {
        match self {
            FileKind::Healing => "rule",
            FileKind::Interop => "mapping",
            FileKind::Flags => "flag",
        }
    }
}

/// True for paths [`crate::RuleSet::load`] accepts (`{healing,interop,flags}/*.rhai`).
pub fn is_rule_file(path: &str) -> bool {
    FileKind::of_path(path).is_some()
}

/// Where things are in one source: file name plus a way to find a key's line:col.
#[derive(Clone)]
pub(crate) struct Origin {
    pub file: Arc<str>,
    /// Rhai source (None for data-built entries, whose errors have no position).
    pub src: Option<Arc<str>>,
    /// Position of the metadata declaration, used when a key cannot be found.
    pub decl: (usize, usize),
}

impl Origin {
    pub(crate) fn data(label: &str) -> Self {
        Self {
            file: Arc::from(label),
            src: None,
            decl: (0, 0),
        }
    }

    pub(crate) fn err(&self, at: (usize, usize), kind: LoadErrorKind) -> LoadError {
        LoadError {
            file: self.file.to_string(),
            line: at.0,
            column: at.1,
            kind,
        }
    }

    /// line:col of the first `key:` / `"key":` in the source, else the declaration.
    pub(crate) fn key_pos(&self, key: &str) -> (usize, usize) {
        let Some(src) = &self.src else {
            return self.decl;
        };
        let bytes = src.as_bytes();
        for quoted in [false, true] {
            let needle = if quoted {
                format!("\"{key}\"")
            } else {
                key.to_string()
            };
            let mut from = 0;
            while let Some(i) = src[from..].find(&needle) {
                let start = from + i;
                let end = start + needle.len();
                from = end;
                let before_ok = start == 0 || {
                    let c = bytes[start - 1];
                    !(c.is_ascii_alphanumeric() || c == b'_' || c == b'"' || c == b'.')
                };
                let rest = src[end..].trim_start_matches([' ', '\t']);
                if before_ok && rest.starts_with(':') && !rest.starts_with("::") {
                    return line_col(src, start);
                }
            }
        }
        self.decl
    }

    /// line:col of `needle` as a value (e.g. a platform name in a list).
    pub(crate) fn value_pos(&self, key: &str, needle: &str) -> (usize, usize) {
        let key_at = self.key_pos(key);
        if let Some(src) = &self.src {
            let start = offset_of(src, key_at);
            if let Some(i) = src[start..].find(&format!("\"{needle}\"")) {
                return line_col(src, start + i);
            }
        }
        key_at
    }
}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn offset_of(src: &str, (line, col): (usize, usize)) -> usize {
    if line == 0 {
        return 0;
    }
    let mut off = 0;
    for (i, l) in src.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return off
                + l.char_indices()
                    .nth(col.saturating_sub(1))
                    .map_or(0, |(b, _)| b);
        }
        off += l.len();
    }
    0
}

/// A compiled and evaluated file: its script and its metadata as JSON.
pub(crate) struct Evaluated {
    pub script: Script,
    pub meta: Map<String, Value>,
    pub origin: Origin,
}

/// Compile and run the top level of one file. Errors are returned with positions.
pub(crate) fn evaluate_file(
    engine: &Arc<Engine>,
    limits: &Arc<Limits>,
    file: &str,
    src: &str,
    kind: FileKind,
    deadline: Option<std::time::Instant>,
) -> Result<Evaluated, LoadError> {
    let mut origin = Origin {
        file: Arc::from(file),
        src: Some(Arc::from(src)),
        decl: (1, 1),
    };
    if src.len() > limits.max_source_bytes {
        return Err(origin.err(
            (0, 0),
            LoadErrorKind::FileTooLarge {
                bytes: src.len(),
                limit_bytes: limits.max_source_bytes,
            },
        ));
    }
    let ast: AST = engine.compile(src).map_err(|e| {
        let at = sandbox::pos(e.1);
        let kind = match *e.0 {
            rhai::ParseErrorType::ExprTooDeep => {
                LoadErrorKind::Script(ScriptErrorKind::ExprTooDeep)
            }
            ref other => LoadErrorKind::Syntax {
                message: other.to_string(),
            },
        };
        origin.err(at, kind)
    })?;
    let variable = kind.variable();
    if let Some(i) = src.find(&format!("let {variable}")) {
        origin.decl = line_col(src, i);
    }
    let mut scope = Scope::new();
    {
        let _guard = DeadlineGuard::set(deadline);
        engine.run_ast_with_scope(&mut scope, &ast).map_err(|e| {
            let (kind, p) = sandbox::classify(&e, limits);
            origin.err(sandbox::pos(p), LoadErrorKind::Script(kind))
        })?;
    }
    let Some(value) = scope.get(variable) else {
        return Err(origin.err(
            (1, 1),
            LoadErrorKind::MissingDeclaration {
                variable: variable.to_string(),
            },
        ));
    };
    let meta = match sandbox::from_dynamic(value) {
        Some(Value::Object(m)) => m,
        _ => {
            return Err(origin.err(
                origin.decl,
                LoadErrorKind::WrongType {
                    field: variable.to_string(),
                    expected: "an object map `#{ ... }`".into(),
                    found: value.type_name().to_string(),
                },
            ))
        }
    };
    // Rhai does not check map size on `m[new_key] = v`: check the result here.
    if meta.len() > limits.max_map_len {
        return Err(origin.err(
            origin.decl,
            LoadErrorKind::Script(ScriptErrorKind::DataTooLarge {
                what: format!(
                    "`{variable}` has {} entries, over {}",
                    meta.len(),
                    limits.max_map_len
                ),
            }),
        ));
    }
    // The top level has run; keep only the functions for later calls.
    let mut fn_ast = ast;
    fn_ast.clear_statements();
    Ok(Evaluated {
        script: Script {
            engine: engine.clone(),
            ast: fn_ast,
            file: origin.file.clone(),
            limits: limits.clone(),
            src: origin.src.clone(),
        },
        meta,
        origin,
    })
}

/// Typed, positioned access to a metadata map. Collects every error it finds.
pub(crate) struct Meta<'a> {
    pub map: &'a Map<String, Value>,
    pub origin: &'a Origin,
    pub errors: Vec<LoadError>,
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "()",
        Value::Bool(_) => "a bool",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a map",
    }
}

impl<'a> Meta<'a> {
    pub(crate) fn new(map: &'a Map<String, Value>, origin: &'a Origin) -> Self {
        Self {
            map,
            origin,
            errors: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, key: &str, kind: LoadErrorKind) {
        let at = self.origin.key_pos(key);
        self.errors.push(self.origin.err(at, kind));
    }

    pub(crate) fn error_at(&mut self, at: (usize, usize), kind: LoadErrorKind) {
        self.errors.push(self.origin.err(at, kind));
    }

    pub(crate) fn check_known(&mut self, known: &[&str]) {
        let unknown: Vec<String> = self
            .map
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .cloned()
            .collect();
        for k in unknown {
            self.error(
                &k,
                LoadErrorKind::UnknownField {
                    field: k.clone(),
                    known: known.join(", "),
                },
            );
        }
    }

    fn wrong(&mut self, key: &str, expected: &str, found: &Value) {
        self.error(
            key,
            LoadErrorKind::WrongType {
                field: key.into(),
                expected: expected.into(),
                found: type_name(found).into(),
            },
        );
    }

    fn get(&mut self, key: &str, required: bool) -> Option<&'a Value> {
        match self.map.get(key) {
            None | Some(Value::Null) if required => {
                let at = self.origin.decl;
                self.error_at(at, LoadErrorKind::MissingField { field: key.into() });
                None
            }
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    pub(crate) fn string(&mut self, key: &str, required: bool) -> Option<String> {
        match self.get(key, required)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            v => {
                self.wrong(key, "a non-empty string", v);
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, key: &str, required: bool) -> Option<bool> {
        match self.get(key, required)? {
            Value::Bool(b) => Some(*b),
            v => {
                self.wrong(key, "a bool (true or false)", v);
                None
            }
        }
    }

    pub(crate) fn number(&mut self, key: &str, required: bool) -> Option<f64> {
        match self.get(key, required)? {
            Value::Number(n) => n.as_f64(),
            v => {
                self.wrong(key, "a number", v);
                None
            }
        }
    }

    pub(crate) fn integer(&mut self, key: &str, required: bool) -> Option<i64> {
        match self.get(key, required)? {
            Value::Number(n) if n.is_i64() => n.as_i64(),
            v => {
                self.wrong(key, "an integer", v);
                None
            }
        }
    }

    pub(crate) fn strings(&mut self, key: &str, required: bool) -> Option<Vec<String>> {
        match self.get(key, required)? {
            Value::Array(items) if items.iter().all(|v| v.is_string()) => Some(
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            ),
            v => {
                self.wrong(key, "an array of strings", v);
                None
            }
        }
    }

    /// A map of string to string, in the file's order of keys (sorted: Rhai maps are).
    pub(crate) fn string_map(
        &mut self,
        key: &str,
        required: bool,
    ) -> Option<Vec<(String, String)>> {
        match self.get(key, required)? {
            Value::Object(m) if m.values().all(|v| v.is_string()) => Some(
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect(),
            ),
            v => {
                self.wrong(key, "a map of strings `#{ key: \"value\" }`", v);
                None
            }
        }
    }
}

/// Compile a regex within the size limit, mapping failures to load errors.
pub(crate) fn compile_regex(
    pattern: &str,
    field: &str,
    limits: &Limits,
) -> Result<regex::Regex, LoadErrorKind> {
    regex::RegexBuilder::new(pattern)
        .size_limit(limits.regex_size_limit_bytes)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => LoadErrorKind::RegexTooLarge {
                field: field.into(),
                limit_bytes: limits.regex_size_limit_bytes,
            },
            other => LoadErrorKind::InvalidRegex {
                field: field.into(),
                message: other
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim()
                    .to_string(),
            },
        })
}
