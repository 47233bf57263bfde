//! Fixed words and booleans: a setting that is one of a few names
//! (`action: tarpit`, `format: logfmt`, `kind: http`), and `true`/`false`.
//! A near miss is answered with the word meant ("did you mean ...?").

use serde_yaml::Value;

use super::text::string;
use super::{one_of, Bad, Kind};
use crate::config::raw::closest;

/// One of the values in `all`, written as `name` gives it; `what` names the
/// setting in the problem (`is not a known limit action`).
pub(in crate::config) struct Word<'a, T: 'static> {
    pub all: &'a [T],
    pub name: fn(T) -> &'static str,
    pub what: &'a str,
}

impl<T: Copy> Word<'_, T> {
    fn names(&self) -> Vec<&'static str> {
        self.all.iter().map(|&v| (self.name)(v)).collect()
    }
}

impl<T: Copy> Kind for Word<'_, T> {
    type Out = T;

    fn read(&self, value: &Value) -> Result<T, Bad> {
        let names = self.names();
        let text = string(value, &one_of(&names))?;
        if let Some(&found) = self.all.iter().find(|&&v| (self.name)(v) == text) {
            return Ok(found);
        }
        let hint = match closest(text, &names) {
            Some(near) => format!("did you mean {near}? "),
            None => String::new(),
        };
        Err(Bad::new(
            Some(text),
            format!("is not a known {}", self.what),
            format!("{hint}use {}", one_of(&names)),
        ))
    }
}

/// `true` or `false`; also the quoted `"true"`/`"false"` templating tools
/// write, as counts take `"8"`. YAML 1.1's `yes`/`on` are refused: YAML 1.2
/// (and serde_yaml) reads them as strings, and guessing here would make
/// spliced disagree with every other 1.2 tool.
pub(in crate::config) struct Flag;

impl Kind for Flag {
    type Out = bool;

    fn read(&self, value: &Value) -> Result<bool, Bad> {
        self.read_or(value, &false)
    }

    fn read_or(&self, value: &Value, default: &bool) -> Result<bool, Bad> {
        match value {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if s.trim() == "true" => Ok(true),
            Value::String(s) if s.trim() == "false" => Ok(false),
            other => Err(Bad::not_a(
                other,
                "true or false",
                format!("write true or false (the default is {default})"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::read;
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Colour {
        Red,
        Green,
    }

    fn colour_name(c: Colour) -> &'static str {
        match c {
            Colour::Red => "red",
            Colour::Green => "green",
        }
    }

    const COLOUR: Word<'static, Colour> = Word {
        all: &[Colour::Red, Colour::Green],
        name: colour_name,
        what: "colour",
    };

    #[test]
    fn words_are_exact_and_near_misses_are_named() {
        assert_eq!(read(&COLOUR, "green"), Ok(Colour::Green));
        assert_eq!(
            read(&COLOUR, "gren"),
            Err(r#""gren" is not a known colour: did you mean green? use red or green"#.into())
        );
        assert_eq!(
            read(&COLOUR, "blue"),
            Err(r#""blue" is not a known colour: use red or green"#.into())
        );
        assert_eq!(
            read(&COLOUR, "1"),
            Err(r#""1" is a number, not text: write red or green; quote it if it looks like a number or true/false"#.into())
        );
    }

    #[test]
    fn flags_are_true_or_false_and_nothing_else() {
        assert_eq!(read(&Flag, "true"), Ok(true));
        assert_eq!(read(&Flag, "' false '"), Ok(false));
        let with_default = |yaml: &str| {
            let value: Value = serde_yaml::from_str(yaml).unwrap();
            Flag.read_or(&value, &true).map_err(|bad| bad.to_string())
        };
        assert_eq!(
            with_default("yes"),
            Err(r#""yes" is a string, not true or false: write true or false (the default is true)"#.into())
        );
        assert_eq!(
            with_default("1"),
            Err(
                r#""1" is a number, not true or false: write true or false (the default is true)"#
                    .into()
            )
        );
    }
}
