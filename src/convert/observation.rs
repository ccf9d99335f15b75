//! What each trail form means as a STIX observation: the pattern an indicator carries and the observable (SCO) it
//! is based on. One table, so the pattern and the observable can never disagree.

use proto_stix::pattern::regex_escape;
use proto_stix::{Destination, ObjectType, Observation};

use crate::trails::{Entry, Form};

/// The start every path regex shares: any scheme, any host (and port).
const ANY_HOST: &str = "^[a-z]+://[^/]+";

/// The regular expression a path trail becomes. Maltrail matches a path trail against the path of any HTTP
/// request on any host: the path itself, the path without its query, extension or last segment. So: after the
/// path (trailing `/` removed) comes the end of the URL or one of `/ ? # .`. A path ending in `=` or `?` is a
/// prefix (`/cmd.php?hwid=` matches whatever value follows).
pub(crate) fn path_regex(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    let mut regex = String::with_capacity(ANY_HOST.len() + trimmed.len() + 24);
    regex.push_str(ANY_HOST);
    regex.push_str(&regex_escape(trimmed));
    if !trimmed.ends_with(['=', '?']) {
        regex.push_str("(?:[/?#.]|$)");
    }
    regex
}

/// The pattern of a trail. `scratch` receives the path regex when there is one (the observation borrows it).
pub fn observation<'a>(entry: &'a Entry, scratch: &'a mut String) -> Observation<'a> {
    let value = entry.value.as_str();
    let port = entry.port.unwrap_or_default();
    match entry.form {
        Form::Ipv4 | Form::Ipv4Cidr => Observation::Ipv4Addr(value),
        Form::Ipv6 | Form::Ipv6Cidr => Observation::Ipv6Addr(value),
        Form::Domain => Observation::DomainName(value),
        Form::Url | Form::HostPath => Observation::Url(value),
        Form::Ipv4Port => Observation::NetworkTraffic { destination: Destination::Ipv4(value), port },
        Form::Ipv6Port => Observation::NetworkTraffic { destination: Destination::Ipv6(value), port },
        Form::DomainPort => Observation::NetworkTraffic { destination: Destination::Domain(value), port },
        Form::DomainRegex => Observation::DomainMatches(value),
        Form::Path => {
            *scratch = path_regex(value);
            Observation::UrlMatches(scratch)
        }
    }
}

/// The type of the observable a trail's indicator is based on, or `None` for the regex forms (a path on any host,
/// a domain regex), which name no single object.
pub(crate) fn observable_type(form: Form) -> Option<ObjectType> {
    match form {
        Form::Ipv4 | Form::Ipv4Cidr | Form::Ipv4Port => Some(ObjectType::Ipv4Addr),
        Form::Ipv6 | Form::Ipv6Cidr | Form::Ipv6Port => Some(ObjectType::Ipv6Addr),
        Form::Domain | Form::DomainPort => Some(ObjectType::DomainName),
        Form::Url | Form::HostPath => Some(ObjectType::Url),
        Form::Path | Form::DomainRegex => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_regexes() {
        assert_eq!(path_regex("/cmd.php?hwid="), "^[a-z]+://[^/]+/cmd\\.php\\?hwid=");
        assert_eq!(path_regex("/365-Stealer/yourVictims/"), "^[a-z]+://[^/]+/365-Stealer/yourVictims(?:[/?#.]|$)");
        assert_eq!(path_regex("/a?"), "^[a-z]+://[^/]+/a\\?");
    }
}
