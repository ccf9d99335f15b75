//! The Maltrail connector's own settings (`MALTRAIL_*`: where the trails come from and how they become STIX), its
//! defaults for the platform's settings, and every section's documentation, from which the README tables,
//! `config.yml.sample` and the catalog's schema are generated.

use std::path::{Path, PathBuf};
use std::time::Duration;

use opencti_connector::settings::{
    ConnectorDefaults, Count, Fallback, HttpUrl, PLATFORM_SECTIONS, Period, Secret, SectionDoc, Setting, SettingValue,
    Settings, SettingsError, Vars, enum_schema, list, platform_docs,
};
use proto_stix::Tlp;
use serde_json::{Map, Value, json};

use crate::convert::{ConvertOptions, Scores};
use crate::trails::Category;

/// The catalog slug, also the prefix of the connector's metrics.
pub(crate) const SLUG: &str = "maltrail";
/// Where Maltrail keeps its static trails (`MALTRAIL_PATH`'s default).
pub(crate) const DEFAULT_TRAILS_PATH: &str = "trails/static";
/// Every section this connector reads, for the environment and `config.yml`.
pub const SECTIONS: [&str; 4] = [PLATFORM_SECTIONS[0], PLATFORM_SECTIONS[1], PLATFORM_SECTIONS[2], "maltrail"];

/// The connector's defaults for the platform's settings.
pub const DEFAULTS: ConnectorDefaults =
    ConnectorDefaults { name: "Maltrail", scope: &["maltrail"], duration_period: Duration::from_secs(3600) };

/// Where the trails come from: `MALTRAIL_*` (the source; the conversion knobs are in [`ConvertOptions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaltrailSettings {
    /// GitHub's REST API (`https://api.github.com`, or `https://host/api/v3` for GitHub Enterprise), without a
    /// trailing `/`.
    pub api_base_url: String,
    /// Raises GitHub's rate limit from 60 to 5,000 requests an hour.
    pub api_key: Option<Secret>,
    /// `owner/name`.
    pub repository: String,
    /// Branch, tag or commit.
    pub git_ref: String,
    /// The trails folder in the repository, without leading or trailing `/`.
    pub path: String,
    /// Read the trails folder of a local checkout instead of GitHub.
    pub directory: Option<PathBuf>,
    /// A file larger than this travels to the worker as its git blob id, not in the job.
    pub job_inline_bytes: usize,
    /// Most `valid_until` patches one run sends to keep listed trails valid.
    pub refresh_max_patches: usize,
}

impl MaltrailSettings {
    /// Where the repository's files are browsed: `https://github.com` for `https://api.github.com`, `https://host`
    /// for GitHub Enterprise's `https://host/api/v3`, else the API base itself (a test server).
    pub(crate) fn web_url(&self) -> String {
        let base = self.api_base_url.as_str();
        if let Some((scheme, host)) = base.split_once("://")
            && host.eq_ignore_ascii_case("api.github.com")
        {
            return format!("{scheme}://github.com");
        }
        base.strip_suffix("/api/v3").unwrap_or(base).to_owned()
    }

    /// Where a trail file is browsed, for the indicators' external references:
    /// `{web_url}/{repository}/blob/{git_ref}/{path}`.
    pub(crate) fn file_link_base(&self) -> String {
        let mut link = format!("{}/{}/blob/{}", self.web_url(), self.repository, self.git_ref);
        if !self.path.is_empty() {
            link.push('/');
            link.push_str(&self.path);
        }
        link
    }
}

/// `owner/name`, each part made of the characters GitHub allows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Repository(String);

impl SettingValue for Repository {
    fn schema() -> Map<String, Value> {
        opencti_connector::settings::schema_of("string")
    }

    fn parse(text: &str, _noun: &str) -> Result<Self, String> {
        let part = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if text.split_once('/').is_some_and(|(owner, name)| part(owner) && part(name)) {
            Ok(Repository(text.to_owned()))
        } else {
            Err("is not a GitHub repository (expected owner/name, e.g. stamparm/maltrail)".into())
        }
    }

    fn to_json(&self) -> Value {
        json!(self.0)
    }
}

/// A branch, tag or commit: no space or control character.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GitRef(String);

impl SettingValue for GitRef {
    fn schema() -> Map<String, Value> {
        opencti_connector::settings::schema_of("string")
    }

    fn parse(text: &str, _noun: &str) -> Result<Self, String> {
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("is not a git branch, tag or commit (e.g. master)".into());
        }
        Ok(GitRef(text.to_owned()))
    }

    fn to_json(&self) -> Value {
        json!(self.0)
    }
}

/// The trails folder, whose sub-folders are the categories: a category folder itself is refused, since its files
/// would lose their category (use `MALTRAIL_CATEGORIES` for one category).
#[derive(Debug, Clone, PartialEq, Eq)]
struct TrailsFolder(PathBuf);

/// The name of a category folder that a trails folder setting must not end with.
fn category_folder(path: &Path) -> Option<&'static str> {
    let last = path.file_name()?.to_str()?;
    ["malware", "malicious", "suspicious"].into_iter().find(|folder| *folder == last)
}

impl SettingValue for TrailsFolder {
    fn schema() -> Map<String, Value> {
        opencti_connector::settings::schema_of("string")
    }

    fn parse(text: &str, _noun: &str) -> Result<Self, String> {
        let path = PathBuf::from(text.trim_end_matches('/'));
        match category_folder(&path) {
            Some(category) => Err(format!(
                "is the `{category}` category's folder, not the trails folder (which holds malware/, malicious/, \
                 suspicious/ and mass_scanner.txt): point it at the folder above, and import one category with \
                 MALTRAIL_CATEGORIES={category}"
            )),
            None => Ok(TrailsFolder(path)),
        }
    }

    fn to_json(&self) -> Value {
        json!(self.0.display().to_string())
    }
}

/// Categories to import: a comma-separated list of names, any case, duplicates dropped, order kept.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Categories(Vec<Category>);

impl SettingValue for Categories {
    fn schema() -> Map<String, Value> {
        let mut schema = opencti_connector::settings::schema_of("array");
        schema.insert(
            "items".into(),
            Value::Object(enum_schema(&["malware", "malicious", "suspicious", "mass_scanner"])),
        );
        schema
    }

    fn parse(text: &str, _noun: &str) -> Result<Self, String> {
        let names = list(text);
        if names.is_empty() {
            return Err("names no category (expected a comma-separated list of malware, malicious, suspicious, \
                        mass_scanner)"
                .into());
        }
        let mut categories = Vec::with_capacity(names.len());
        for name in names {
            let category = Category::from_name(&name.to_ascii_lowercase()).ok_or_else(|| {
                format!(
                    "names `{name}`, which is not a category (expected malware, malicious, suspicious or mass_scanner)"
                )
            })?;
            if !categories.contains(&category) {
                categories.push(category);
            }
        }
        Ok(Categories(categories))
    }

    fn to_json(&self) -> Value {
        json!(self.0.iter().map(|c| c.as_str()).collect::<Vec<_>>())
    }
}

/// A TLP level, as OpenCTI's connectors name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TlpLevel(Tlp);

impl SettingValue for TlpLevel {
    fn schema() -> Map<String, Value> {
        enum_schema(&["clear", "white", "green", "amber", "amber+strict", "red"])
    }

    fn parse(text: &str, _noun: &str) -> Result<Self, String> {
        text.parse::<Tlp>()
            .map(TlpLevel)
            .map_err(|_| "is not a TLP level (expected clear, white, green, amber, amber+strict or red)".into())
    }

    fn to_json(&self) -> Value {
        let name = self.0.name();
        json!(name.strip_prefix("TLP:").unwrap_or(name).to_ascii_lowercase())
    }
}

type Score = Count<0, 100>;

const API_BASE_URL: Setting<HttpUrl> = Setting::new(
    "MALTRAIL_API_BASE_URL",
    "GitHub's REST API; GitHub Enterprise: `https://<host>/api/v3`.",
    Fallback::Value(|| HttpUrl::trusted("https://api.github.com")),
);
const API_KEY: Setting<Secret> =
    Setting::new("MALTRAIL_API_KEY", "GitHub token: 5,000 API requests an hour instead of 60.", Fallback::None);
const REPOSITORY: Setting<Repository> = Setting::new(
    "MALTRAIL_REPOSITORY",
    "The repository holding the trails, `owner/name`.",
    Fallback::Value(|| Repository("stamparm/maltrail".into())),
);
const REF: Setting<GitRef> =
    Setting::new("MALTRAIL_REF", "Branch, tag or commit to follow.", Fallback::Value(|| GitRef("master".into())));
const PATH: Setting<TrailsFolder> = Setting::new(
    "MALTRAIL_PATH",
    "The trails folder in the repository (the one holding malware/, malicious/, suspicious/).",
    Fallback::Value(|| TrailsFolder(PathBuf::from(DEFAULT_TRAILS_PATH))),
);
const DIRECTORY: Setting<TrailsFolder> = Setting::new(
    "MALTRAIL_DIRECTORY",
    "Read this local trails folder (a checkout's `trails/static`) instead of GitHub.",
    Fallback::None,
);
const JOB_INLINE_BYTES: Setting<Count<1024, { 64 * 1024 * 1024 }>> = Setting::new(
    "MALTRAIL_JOB_INLINE_BYTES",
    "A trail file larger than this travels to the worker as its git blob's id, which the worker fetches from GitHub, \
     instead of in the job (RabbitMQ 4 refuses messages over 16 MiB by default).",
    Fallback::Value(|| Count(4 * 1024 * 1024)),
)
.noun("a number of bytes");
const CATEGORIES: Setting<Categories> = Setting::new(
    "MALTRAIL_CATEGORIES",
    "Categories to import: `malware`, `malicious`, `suspicious`, `mass_scanner`.",
    Fallback::Value(|| Categories(ConvertOptions::default().categories)),
);
const CREATE_OBSERVABLES: Setting<bool> = Setting::new(
    "MALTRAIL_CREATE_OBSERVABLES",
    "Also send each trail's observable, linked to its indicator by `based-on`.",
    Fallback::Value(|| true),
);
const SCORE_MALWARE: Setting<Score> = Setting::new(
    "MALTRAIL_SCORE_MALWARE",
    "`x_opencti_score` of malware trails.",
    Fallback::Value(|| Count(u64::from(Scores::default().malware))),
)
.noun("a score");
const SCORE_MALICIOUS: Setting<Score> = Setting::new(
    "MALTRAIL_SCORE_MALICIOUS",
    "`x_opencti_score` of malicious trails.",
    Fallback::Value(|| Count(u64::from(Scores::default().malicious))),
)
.noun("a score");
const SCORE_SUSPICIOUS: Setting<Score> = Setting::new(
    "MALTRAIL_SCORE_SUSPICIOUS",
    "`x_opencti_score` of suspicious trails.",
    Fallback::Value(|| Count(u64::from(Scores::default().suspicious))),
)
.noun("a score");
const SCORE_MASS_SCANNER: Setting<Score> = Setting::new(
    "MALTRAIL_SCORE_MASS_SCANNER",
    "`x_opencti_score` of mass scanner trails.",
    Fallback::Value(|| Count(u64::from(Scores::default().mass_scanner))),
)
.noun("a score");
const VALIDITY: Setting<Period> = Setting::new(
    "MALTRAIL_VALIDITY",
    "How long an indicator holds (its `valid_until`) after it is sent; the trails Maltrail still lists are patched \
     with a new `valid_until` every third of it, so they stay valid while listed, and expire that long after the \
     connector stops. A platform with decay enabled replaces it unless a decay exclusion rule covers the connector \
     (see the README).",
    Fallback::Value(|| Period(crate::convert::DEFAULT_VALIDITY)),
);
const REFRESH_MAX_PATCHES: Setting<Count<0, 10_000_000>> = Setting::new(
    "MALTRAIL_REFRESH_MAX_PATCHES",
    "Most `valid_until` patches one run sends; the rest wait for the next run. `0` turns the refresh off. The \
     default refreshes the whole trail set (about 1.6 million) within a third of the validity when runs are hourly \
     or more frequent; raise it for longer periods.",
    Fallback::Value(|| Count(50_000)),
)
.noun("a number of patches");
const TLP: Setting<TlpLevel> = Setting::new(
    "MALTRAIL_TLP",
    "TLP marking of everything imported: `clear` (or `white`), `green`, `amber`, `amber+strict`, `red`.",
    Fallback::Value(|| TlpLevel(Tlp::Clear)),
);

impl MaltrailSettings {
    pub fn read(vars: &Vars) -> Result<Self, SettingsError> {
        Ok(Self {
            api_base_url: vars.get(&API_BASE_URL)?.as_str().to_owned(),
            api_key: vars.optional(&API_KEY)?,
            repository: vars.get(&REPOSITORY)?.0,
            git_ref: vars.get(&REF)?.0,
            path: vars.get(&PATH)?.0.display().to_string().trim_matches('/').to_owned(),
            directory: vars.optional(&DIRECTORY)?.map(|folder| folder.0),
            job_inline_bytes: vars.get(&JOB_INLINE_BYTES)?.as_usize(),
            refresh_max_patches: vars.get(&REFRESH_MAX_PATCHES)?.as_usize(),
        })
    }

    pub fn docs() -> SectionDoc {
        SectionDoc {
            name: "maltrail",
            title: "Maltrail: where the trails come from, and how they become STIX",
            settings: vec![
                API_BASE_URL.doc(),
                API_KEY.doc(),
                REPOSITORY.doc(),
                REF.doc(),
                PATH.doc(),
                DIRECTORY.doc(),
                JOB_INLINE_BYTES.doc(),
                CATEGORIES.doc(),
                CREATE_OBSERVABLES.doc(),
                SCORE_MALWARE.doc(),
                SCORE_MALICIOUS.doc(),
                SCORE_SUSPICIOUS.doc(),
                SCORE_MASS_SCANNER.doc(),
                TLP.doc(),
                VALIDITY.doc(),
                REFRESH_MAX_PATCHES.doc(),
            ],
        }
    }
}

/// The conversion knobs (`MALTRAIL_*`), for the links of `maltrail`'s files.
pub fn convert_options(vars: &Vars, maltrail: &MaltrailSettings) -> Result<ConvertOptions, SettingsError> {
    let score = |setting: &Setting<Score>| -> Result<u8, SettingsError> {
        Ok(u8::try_from(vars.get(setting)?.get()).unwrap_or(u8::MAX))
    };
    Ok(ConvertOptions {
        categories: vars.get(&CATEGORIES)?.0,
        create_observables: vars.get(&CREATE_OBSERVABLES)?,
        scores: Scores {
            malware: score(&SCORE_MALWARE)?,
            malicious: score(&SCORE_MALICIOUS)?,
            suspicious: score(&SCORE_SUSPICIOUS)?,
            mass_scanner: score(&SCORE_MASS_SCANNER)?,
        },
        tlp: vars.get(&TLP)?.0,
        validity: vars.get(&VALIDITY)?.as_duration(),
        file_link_base: maltrail.file_link_base(),
    })
}

/// Every section this connector reads, documented: the platform's three and `maltrail`.
pub fn docs() -> Vec<SectionDoc> {
    let mut sections = platform_docs(&DEFAULTS);
    sections.push(MaltrailSettings::docs());
    sections
}

/// Everything the connector runs with, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub platform: Settings,
    pub maltrail: MaltrailSettings,
    pub convert: ConvertOptions,
}

impl Config {
    /// Every section; requires `OPENCTI_URL`, `OPENCTI_TOKEN` and `CONNECTOR_ID`.
    pub fn read(vars: &Vars) -> Result<Self, SettingsError> {
        let maltrail = MaltrailSettings::read(vars)?;
        Ok(Self { platform: Settings::read(vars, &DEFAULTS)?, convert: convert_options(vars, &maltrail)?, maltrail })
    }

    /// The variables (`NAME`, value) over no config file.
    pub fn from_env(env: impl IntoIterator<Item = (String, String)>) -> Result<Self, SettingsError> {
        Self::read(&Vars::merge(env, None, &SECTIONS)?)
    }
}
