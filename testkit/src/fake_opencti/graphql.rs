//! GraphQL documents: their types, and a parser for the executable subset connectors send (no fragments or directives).

use std::fmt;

use serde_json::{Map, Value, json};

/// An operation of a document.
#[derive(Clone, Debug)]
pub struct Operation {
    pub kind: OpKind,
    pub name: Option<String>,
    pub var_defs: Vec<VarDef>,
    pub selection: Vec<Field>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Query,
    Mutation,
    Subscription,
}

/// `$name: Type = default`.
#[derive(Clone, Debug)]
pub struct VarDef {
    pub name: String,
    pub ty: TypeRef,
    pub default: Option<Lit>,
}

/// A type reference: `Name`, `[T]`, `T!`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeRef {
    Named(String),
    List(Box<TypeRef>),
    NonNull(Box<TypeRef>),
}

impl TypeRef {
    /// Parses a type written in the schema tables; they are fixed, so a bad one is a bug here.
    pub fn schema(text: &str) -> TypeRef {
        let mut parser = Parser { tokens: tokenize(text).expect("schema type"), pos: 0 };
        parser.type_ref().expect("schema type")
    }

    /// The named type inside.
    pub fn named(&self) -> &str {
        match self {
            TypeRef::Named(name) => name,
            TypeRef::List(inner) | TypeRef::NonNull(inner) => inner.named(),
        }
    }

    pub fn is_non_null(&self) -> bool {
        matches!(self, TypeRef::NonNull(_))
    }
}

impl fmt::Display for TypeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeRef::Named(name) => write!(f, "{name}"),
            TypeRef::List(inner) => write!(f, "[{inner}]"),
            TypeRef::NonNull(inner) => write!(f, "{inner}!"),
        }
    }
}

/// Whether a variable of type `variable` (with a non-null default or not) may be used where `location` is
/// expected (graphql-js `VariablesInAllowedPositionRule`).
pub fn usage_allowed(variable: &TypeRef, has_default: bool, location: &TypeRef) -> bool {
    match location {
        TypeRef::NonNull(location_inner) if !variable.is_non_null() => {
            has_default && is_subtype(variable, location_inner)
        }
        _ => is_subtype(variable, location),
    }
}

fn is_subtype(sub: &TypeRef, sup: &TypeRef) -> bool {
    match (sub, sup) {
        (TypeRef::NonNull(a), TypeRef::NonNull(b)) => is_subtype(a, b),
        (TypeRef::NonNull(a), _) => is_subtype(a, sup),
        (_, TypeRef::NonNull(_)) => false,
        (TypeRef::List(a), TypeRef::List(b)) => is_subtype(a, b),
        (TypeRef::List(_), _) | (_, TypeRef::List(_)) => false,
        (TypeRef::Named(a), TypeRef::Named(b)) => a == b,
    }
}

/// A field of a selection set.
#[derive(Clone, Debug)]
pub struct Field {
    pub alias: Option<String>,
    pub name: String,
    pub args: Vec<(String, Lit)>,
    pub selection: Option<Vec<Field>>,
}

impl Field {
    /// The key of the field in the answer: the alias, or the name.
    pub fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

/// A value written in a document.
#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    Var(String),
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    Enum(String),
    List(Vec<Lit>),
    Object(Vec<(String, Lit)>),
}

/// A literal as GraphQL prints it, for error messages.
pub fn lit_text(lit: &Lit) -> String {
    match lit {
        Lit::Var(name) => format!("${name}"),
        Lit::Int(i) => i.to_string(),
        Lit::Float(f) => f.to_string(),
        Lit::Str(s) => format!("{s:?}"),
        Lit::Bool(b) => b.to_string(),
        Lit::Null => "null".into(),
        Lit::Enum(e) => e.clone(),
        Lit::List(items) => format!("[{}]", items.iter().map(lit_text).collect::<Vec<_>>().join(", ")),
        Lit::Object(entries) => format!(
            "{{{}}}",
            entries.iter().map(|(k, v)| format!("{k}: {}", lit_text(v))).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A literal as JSON, variables substituted (`None` for an absent variable).
pub fn lit_to_json(lit: &Lit, variables: &Map<String, Value>) -> Option<Value> {
    Some(match lit {
        Lit::Var(name) => return variables.get(name).cloned(),
        Lit::Int(i) => json!(i),
        Lit::Float(f) => json!(f),
        Lit::Str(s) | Lit::Enum(s) => json!(s),
        Lit::Bool(b) => json!(b),
        Lit::Null => Value::Null,
        Lit::List(items) => {
            Value::Array(items.iter().map(|item| lit_to_json(item, variables).unwrap_or(Value::Null)).collect())
        }
        Lit::Object(entries) => Value::Object(
            entries.iter().filter_map(|(key, value)| Some((key.clone(), lit_to_json(value, variables)?))).collect(),
        ),
    })
}

/// A parsed document.
pub struct Document {
    pub operations: Vec<Operation>,
}

/// Parses a document; the error is graphql-js's syntax error message without its `Syntax Error: ` prefix.
pub fn parse_document(source: &str) -> Result<Document, String> {
    let mut parser = Parser { tokens: tokenize(source)?, pos: 0 };
    parser.document()
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Punct(char),
    Spread,
    Name(String),
    Int(String),
    Float(String),
    Str(String),
}

fn tokenize(source: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' | ',' | '\u{feff}' => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' && chars[i] != '\r' {
                    i += 1;
                }
            }
            '!' | '$' | '&' | '(' | ')' | ':' | '=' | '@' | '[' | ']' | '{' | '|' | '}' => {
                tokens.push(Token::Punct(c));
                i += 1;
            }
            '.' => {
                if chars.get(i + 1) == Some(&'.') && chars.get(i + 2) == Some(&'.') {
                    tokens.push(Token::Spread);
                    i += 3;
                } else {
                    return Err("Unexpected character: \".\".".into());
                }
            }
            '"' => {
                let (text, next) = read_string(&chars, i)?;
                tokens.push(Token::Str(text));
                i = next;
            }
            c if c == '_' || c.is_ascii_alphabetic() => {
                let start = i;
                while i < chars.len() && (chars[i] == '_' || chars[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                tokens.push(Token::Name(chars[start..i].iter().collect()));
            }
            c if c == '-' || c.is_ascii_digit() => {
                let (token, next) = read_number(&chars, i)?;
                tokens.push(token);
                i = next;
            }
            other => return Err(format!("Unexpected character: {other:?}.")),
        }
    }
    Ok(tokens)
}

fn read_number(chars: &[char], start: usize) -> Result<(Token, usize), String> {
    let digit_at = |i: usize| chars.get(i).is_some_and(char::is_ascii_digit);
    let mut i = start;
    if chars[i] == '-' {
        i += 1;
    }
    if !digit_at(i) {
        return Err("Invalid number, expected digit.".into());
    }
    while digit_at(i) {
        i += 1;
    }
    let mut float = false;
    if chars.get(i) == Some(&'.') {
        float = true;
        i += 1;
        if !digit_at(i) {
            return Err("Invalid number, expected digit after \".\".".into());
        }
        while digit_at(i) {
            i += 1;
        }
    }
    if matches!(chars.get(i), Some('e' | 'E')) {
        float = true;
        i += 1;
        if matches!(chars.get(i), Some('+' | '-')) {
            i += 1;
        }
        if !digit_at(i) {
            return Err("Invalid number, expected digit in exponent.".into());
        }
        while digit_at(i) {
            i += 1;
        }
    }
    if chars.get(i).is_some_and(|c| *c == '_' || *c == '.' || c.is_ascii_alphabetic()) {
        return Err(format!("Invalid number, unexpected character {:?}.", chars[i]));
    }
    let text: String = chars[start..i].iter().collect();
    Ok((if float { Token::Float(text) } else { Token::Int(text) }, i))
}

fn read_string(chars: &[char], start: usize) -> Result<(String, usize), String> {
    if chars.get(start + 1) == Some(&'"') && chars.get(start + 2) == Some(&'"') {
        let mut i = start + 3;
        let mut raw = String::new();
        while i < chars.len() {
            if chars[i..].starts_with(&['"', '"', '"']) {
                return Ok((block_string_value(&raw), i + 3));
            }
            if chars[i..].starts_with(&['\\', '"', '"', '"']) {
                raw.push_str("\"\"\"");
                i += 4;
                continue;
            }
            raw.push(chars[i]);
            i += 1;
        }
        return Err("Unterminated string.".into());
    }
    let mut i = start + 1;
    let mut text = String::new();
    while let Some(&c) = chars.get(i) {
        match c {
            '"' => return Ok((text, i + 1)),
            '\n' | '\r' => break,
            '\\' => {
                let escaped = chars.get(i + 1).copied().ok_or("Unterminated string.")?;
                i += 2;
                match escaped {
                    '"' | '\\' | '/' => text.push(escaped),
                    'b' => text.push('\u{8}'),
                    'f' => text.push('\u{c}'),
                    'n' => text.push('\n'),
                    'r' => text.push('\r'),
                    't' => text.push('\t'),
                    'u' => {
                        let hex: String =
                            chars.get(i..i + 4).ok_or("Invalid Unicode escape sequence.")?.iter().collect();
                        let code = u32::from_str_radix(&hex, 16).map_err(|_| "Invalid Unicode escape sequence.")?;
                        text.push(char::from_u32(code).ok_or("Invalid Unicode escape sequence.")?);
                        i += 4;
                    }
                    other => return Err(format!("Invalid character escape sequence: \"\\{other}\".")),
                }
            }
            other => {
                text.push(other);
                i += 1;
            }
        }
    }
    Err("Unterminated string.".into())
}

/// The value of a block string: common indentation removed, blank first and last lines dropped.
fn block_string_value(raw: &str) -> String {
    let lines: Vec<&str> = raw.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let indent = lines
        .iter()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches([' ', '\t']).len())
        .min()
        .unwrap_or(0);
    let mut out: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(n, l)| if n == 0 { (*l).to_owned() } else { l.get(indent..).unwrap_or("").to_owned() })
        .collect();
    while out.first().is_some_and(|l| l.trim().is_empty()) {
        out.remove(0);
    }
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    out.join("\n")
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn bump(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        token
    }

    fn at(&self, c: char) -> bool {
        self.peek() == Some(&Token::Punct(c))
    }

    fn eat(&mut self, c: char) -> bool {
        let found = self.at(c);
        if found {
            self.pos += 1;
        }
        found
    }

    fn describe(&self) -> String {
        match self.peek() {
            None => "<EOF>".into(),
            Some(Token::Punct(c)) => format!("\"{c}\""),
            Some(Token::Spread) => "\"...\"".into(),
            Some(Token::Name(n)) => format!("Name \"{n}\""),
            Some(Token::Int(n)) => format!("Int \"{n}\""),
            Some(Token::Float(n)) => format!("Float \"{n}\""),
            Some(Token::Str(s)) => format!("String {s:?}"),
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) { Ok(()) } else { Err(format!("Expected \"{c}\", found {}.", self.describe())) }
    }

    fn name(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Token::Name(name)) => {
                let name = name.clone();
                self.pos += 1;
                Ok(name)
            }
            _ => Err(format!("Expected Name, found {}.", self.describe())),
        }
    }

    fn no_directives(&self) -> Result<(), String> {
        if self.at('@') { Err("directives are not supported by the fake OpenCTI.".into()) } else { Ok(()) }
    }

    fn document(&mut self) -> Result<Document, String> {
        let mut operations = Vec::new();
        while self.peek().is_some() {
            match self.peek() {
                Some(Token::Punct('{')) => {
                    let selection = self.selection_set()?;
                    operations.push(Operation { kind: OpKind::Query, name: None, var_defs: Vec::new(), selection });
                }
                Some(Token::Name(keyword)) if matches!(keyword.as_str(), "query" | "mutation" | "subscription") => {
                    operations.push(self.operation()?);
                }
                Some(Token::Name(keyword)) if keyword == "fragment" => {
                    return Err("fragments are not supported by the fake OpenCTI.".into());
                }
                _ => return Err(format!("Unexpected {}.", self.describe())),
            }
        }
        if operations.is_empty() {
            return Err("Unexpected <EOF>.".into());
        }
        Ok(Document { operations })
    }

    fn operation(&mut self) -> Result<Operation, String> {
        let kind = match self.name()?.as_str() {
            "query" => OpKind::Query,
            "mutation" => OpKind::Mutation,
            _ => OpKind::Subscription,
        };
        let name = match self.peek() {
            Some(Token::Name(_)) => Some(self.name()?),
            _ => None,
        };
        let mut var_defs = Vec::new();
        if self.eat('(') {
            loop {
                self.expect('$')?;
                let name = self.name()?;
                self.expect(':')?;
                let ty = self.type_ref()?;
                let default = if self.eat('=') { Some(self.value(true)?) } else { None };
                self.no_directives()?;
                var_defs.push(VarDef { name, ty, default });
                if self.eat(')') {
                    break;
                }
            }
        }
        self.no_directives()?;
        let selection = self.selection_set()?;
        Ok(Operation { kind, name, var_defs, selection })
    }

    fn type_ref(&mut self) -> Result<TypeRef, String> {
        let ty = if self.eat('[') {
            let inner = self.type_ref()?;
            self.expect(']')?;
            TypeRef::List(Box::new(inner))
        } else {
            TypeRef::Named(self.name()?)
        };
        Ok(if self.eat('!') { TypeRef::NonNull(Box::new(ty)) } else { ty })
    }

    fn selection_set(&mut self) -> Result<Vec<Field>, String> {
        self.expect('{')?;
        let mut fields = Vec::new();
        loop {
            if self.peek() == Some(&Token::Spread) {
                return Err("fragments are not supported by the fake OpenCTI.".into());
            }
            fields.push(self.field()?);
            if self.eat('}') {
                return Ok(fields);
            }
        }
    }

    fn field(&mut self) -> Result<Field, String> {
        let first = self.name()?;
        let (alias, name) = if self.eat(':') { (Some(first), self.name()?) } else { (None, first) };
        let mut args = Vec::new();
        if self.eat('(') {
            loop {
                let arg = self.name()?;
                self.expect(':')?;
                args.push((arg, self.value(false)?));
                if self.eat(')') {
                    break;
                }
            }
        }
        self.no_directives()?;
        let selection = if self.at('{') { Some(self.selection_set()?) } else { None };
        Ok(Field { alias, name, args, selection })
    }

    fn value(&mut self, constant: bool) -> Result<Lit, String> {
        let found = self.describe();
        match self.bump() {
            Some(Token::Punct('$')) if !constant => Ok(Lit::Var(self.name()?)),
            Some(Token::Int(text)) => text.parse().map(Lit::Int).map_err(|_| format!("Int {text} is too large.")),
            Some(Token::Float(text)) => text.parse().map(Lit::Float).map_err(|_| format!("Invalid Float {text}.")),
            Some(Token::Str(text)) => Ok(Lit::Str(text)),
            Some(Token::Name(name)) => Ok(match name.as_str() {
                "true" => Lit::Bool(true),
                "false" => Lit::Bool(false),
                "null" => Lit::Null,
                _ => Lit::Enum(name),
            }),
            Some(Token::Punct('[')) => {
                let mut items = Vec::new();
                while !self.eat(']') {
                    if self.peek().is_none() {
                        return Err("Expected \"]\", found <EOF>.".into());
                    }
                    items.push(self.value(constant)?);
                }
                Ok(Lit::List(items))
            }
            Some(Token::Punct('{')) => {
                let mut entries = Vec::new();
                while !self.eat('}') {
                    let key = self.name()?;
                    self.expect(':')?;
                    entries.push((key, self.value(constant)?));
                }
                Ok(Lit::Object(entries))
            }
            _ => Err(format!("Unexpected {found}.")),
        }
    }
}
