//! The project's HTML pages (the model card here, the drift report in `fraudlake-drift`, which
//! depends on this crate for the registry anyway) are minijinja templates with auto-escaping.
//! This module sets that up once, so the code base has one HTML escaper: minijinja's
//! [`HtmlEscape`], used by the templates and by the text that code writes into a page (the
//! drift report's SVG).
//!
//! One policy on top of it: `/` is written as it is. minijinja also escapes it (`&#x2f;`, an old
//! precaution for unquoted attribute values), which turned every `n/a`, date range and path in
//! the page source into `n&#x2f;a`; these pages quote every attribute and have no script, so the
//! five characters minijinja escapes besides it are the ones that matter.

use std::fmt::{self, Write as _};

use minijinja::{AutoEscape, Environment, HtmlEscape, UndefinedBehavior};

/// `text` escaped for HTML element content and quoted attribute values: minijinja's
/// [`HtmlEscape`] between the slashes, which stay as they are.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, part) in self.0.split('/').enumerate() {
            if i > 0 {
                f.write_char('/')?;
            }
            write!(f, "{}", HtmlEscape(part))?;
        }
        Ok(())
    }
}

/// An environment holding the one template `name`: every value HTML-escaped with [`Escaped`]
/// (unless marked safe), an undefined variable an error rather than an empty string, and block
/// tags (`{% ... %}`) leaving no blank lines behind.
pub fn environment(
    name: &'static str,
    source: &'static str,
) -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.set_formatter(|out, state, value| {
        if let (AutoEscape::Html, false, Some(s)) =
            (state.auto_escape(), value.is_safe(), value.as_str())
        {
            return Ok(write!(out, "{}", Escaped(s))?);
        }
        minijinja::escape_formatter(out, state, value)
    });
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_template(name, source)?;
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_html_needs_and_keeps_slashes() {
        assert_eq!(
            Escaped(r#"<a href="x">'n/a' & </b>"#).to_string(),
            "&lt;a href=&quot;x&quot;&gt;&#x27;n/a&#x27; &amp; &lt;/b&gt;"
        );
        assert_eq!(Escaped("/").to_string(), "/");
        assert_eq!(Escaped("").to_string(), "");
    }

    #[test]
    fn templates_escape_values_unless_safe() {
        let env = environment("t.html", "<p title=\"{{ a }}\">{{ a }} {{ b|safe }}</p>")
            .expect("template");
        let html = env
            .get_template("t.html")
            .and_then(|t| t.render(minijinja::context! { a => "1/2 <b>", b => "<i>" }))
            .expect("render");
        assert_eq!(html, "<p title=\"1/2 &lt;b&gt;\">1/2 &lt;b&gt; <i></p>");
        let undefined = env
            .get_template("t.html")
            .and_then(|t| t.render(minijinja::context! { a => 1 }));
        assert!(undefined.is_err(), "an undefined variable is an error");
    }
}
