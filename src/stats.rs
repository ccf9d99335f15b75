//! Counts of what a conversion read: files, trails by category and form, skipped lines by reason with a few
//! examples (file:line) for the report. Mergeable, so parallel workers each keep their own. What was sent is
//! counted where it is laid out ([`crate::pipeline::Laid`]); [`Report`] prints both.

use std::collections::BTreeMap;
use std::fmt;

use crate::pipeline::Laid;
use crate::trails::{Category, Form, SkipReason, TrailFile};

/// How many example lines are kept per skip reason.
const EXAMPLES_PER_REASON: usize = 5;

/// A skipped line, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipExample {
    pub file: String,
    pub line: u32,
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub files: u64,
    pub trails: BTreeMap<(Category, Form), u64>,
    pub skipped: BTreeMap<SkipReason, u64>,
    pub skip_examples: BTreeMap<SkipReason, Vec<SkipExample>>,
}

impl Stats {
    /// Counts a parsed file's entries and skipped lines.
    pub(crate) fn count_file(&mut self, file: &TrailFile) {
        self.files += 1;
        for entry in &file.entries {
            *self.trails.entry((file.category, entry.form)).or_default() += 1;
        }
        for skipped in &file.skipped {
            *self.skipped.entry(skipped.reason).or_default() += 1;
            let examples = self.skip_examples.entry(skipped.reason).or_default();
            if examples.len() < EXAMPLES_PER_REASON {
                examples.push(SkipExample { file: file.path.clone(), line: skipped.line, text: skipped.text.clone() });
            }
        }
    }

    pub fn merge(&mut self, other: Stats) {
        self.files += other.files;
        for (key, n) in other.trails {
            *self.trails.entry(key).or_default() += n;
        }
        for (key, n) in other.skipped {
            *self.skipped.entry(key).or_default() += n;
        }
        for (key, examples) in other.skip_examples {
            let mine = self.skip_examples.entry(key).or_default();
            let room = EXAMPLES_PER_REASON.saturating_sub(mine.len());
            mine.extend(examples.into_iter().take(room));
        }
    }

    pub(crate) fn total_trails(&self) -> u64 {
        self.trails.values().sum()
    }

    pub(crate) fn total_skipped(&self) -> u64 {
        self.skipped.values().sum()
    }

    pub(crate) fn trails_in(&self, category: Category) -> u64 {
        self.trails.iter().filter(|((c, _), _)| *c == category).map(|(_, n)| n).sum()
    }

    pub(crate) fn trails_of(&self, form: Form) -> u64 {
        self.trails.iter().filter(|((_, f), _)| *f == form).map(|(_, n)| n).sum()
    }
}

/// What a conversion read and laid out, as the export prints it at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub stats: Stats,
    pub laid: Laid,
}

impl fmt::Display for Report {
    /// The human summary the export prints at the end.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Report { stats: this, laid } = self;
        this.fmt_read(f)?;
        writeln!(f, "objects: {}", laid.total_objects())?;
        for (kind, n) in &laid.objects {
            writeln!(f, "  {kind:<22} {n:>10}")?;
        }
        this.fmt_skipped(f)
    }
}

impl Stats {
    fn fmt_read(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "files: {}", self.files)?;
        writeln!(f, "trails: {}", self.total_trails())?;
        for category in Category::ALL {
            let n = self.trails_in(category);
            if n > 0 {
                writeln!(f, "  {:<22} {n:>10}", category.as_str())?;
            }
        }
        writeln!(f, "trails by form:")?;
        for form in Form::ALL {
            let n = self.trails_of(form);
            if n > 0 {
                writeln!(f, "  {:<22} {n:>10}", form.as_str())?;
            }
        }
        Ok(())
    }

    fn fmt_skipped(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "skipped lines: {}", self.total_skipped())?;
        for (reason, n) in &self.skipped {
            writeln!(f, "  {:<22} {n:>10}", reason.as_str())?;
            for example in self.skip_examples.get(reason).into_iter().flatten() {
                writeln!(f, "      {}:{}  {}", example.file, example.line, example.text)?;
            }
        }
        Ok(())
    }
}
