//! Per language, how text becomes terms: the analyzer both a text
//! index's build and its queries use (registered under the language's code
//! on every tantivy index of `text/`).
//!
//! - `standard` (S3 Vectors' analyzer when no language is given): tantivy's
//!   simple tokenizer and lower-casing, no stemming.
//! - European languages (`en`, `fr`, `es`, `pt`, `it`, `de`, `nl`):
//!   tantivy's simple tokenizer, lower-casing and its Snowball stemmer.
//! - Chinese, Japanese and Korean (`zh`, `ja`, `ko`): overlapping bigrams
//!   of each run of CJK characters, as Lucene's `CJKAnalyzer` does, and
//!   lower-cased words between them. Dictionary segmenters (jieba,
//!   lindera) would need dictionaries this build cannot download.

use serde::{Deserialize, Serialize};
use tantivy::tokenizer::{
    Language as Stemming, LowerCaser, PreTokenizedStream, PreTokenizedString, RemoveLongFilter, SimpleTokenizer,
    Stemmer, TextAnalyzer, Token, Tokenizer,
};

use crate::error::{Error, Result};

/// Terms longer than this many bytes are dropped (tantivy's own default).
const MAX_TERM_BYTES: usize = 40;

/// The languages a text field may be analyzed in (S3 Vectors' list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    Standard,
    En,
    Fr,
    Es,
    Pt,
    It,
    De,
    Nl,
    Zh,
    Ja,
    Ko,
}

impl Language {
    pub const ALL: [Language; 11] = [
        Language::Standard,
        Language::En,
        Language::Fr,
        Language::Es,
        Language::Pt,
        Language::It,
        Language::De,
        Language::Nl,
        Language::Zh,
        Language::Ja,
        Language::Ko,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Language::Standard => "standard",
            Language::En => "en",
            Language::Fr => "fr",
            Language::Es => "es",
            Language::Pt => "pt",
            Language::It => "it",
            Language::De => "de",
            Language::Nl => "nl",
            Language::Zh => "zh",
            Language::Ja => "ja",
            Language::Ko => "ko",
        }
    }

    pub fn from_code(code: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|l| l.code() == code).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|l| l.code()).collect();
            Error::invalid("language", format!("{code:?} is not one of {}", known.join(", ")))
        })
    }

    /// The name the analyzer is registered under on a tantivy index.
    pub(crate) fn tokenizer_name(self) -> &'static str {
        self.code()
    }

    pub(crate) fn analyzer(self) -> TextAnalyzer {
        let stemming = match self {
            Language::Standard => {
                return TextAnalyzer::builder(SimpleTokenizer::default())
                    .filter(RemoveLongFilter::limit(MAX_TERM_BYTES))
                    .filter(LowerCaser)
                    .build()
            }
            Language::En => Stemming::English,
            Language::Fr => Stemming::French,
            Language::Es => Stemming::Spanish,
            Language::Pt => Stemming::Portuguese,
            Language::It => Stemming::Italian,
            Language::De => Stemming::German,
            Language::Nl => Stemming::Dutch,
            Language::Zh | Language::Ja | Language::Ko => {
                return TextAnalyzer::builder(CjkBigrams)
                    .filter(RemoveLongFilter::limit(MAX_TERM_BYTES))
                    .build()
            }
        };
        TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(MAX_TERM_BYTES))
            .filter(LowerCaser)
            .filter(Stemmer::new(stemming))
            .build()
    }

    /// `text`'s terms, in order, repeats kept.
    pub fn terms(self, text: &str) -> Vec<String> {
        let mut analyzer = self.analyzer();
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while let Some(token) = stream.next() {
            out.push(token.text.clone());
        }
        out
    }
}

/// Registers every language's analyzer on `index`.
pub(crate) fn register_all(index: &tantivy::Index) {
    for language in Language::ALL {
        index
            .tokenizers()
            .register(language.tokenizer_name(), language.analyzer());
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK Extension A
        | 0x4E00..=0x9FFF    // CJK Unified Ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0x1100..=0x11FF    // Hangul Jamo
        | 0x3130..=0x318F    // Hangul compatibility Jamo
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0xFF66..=0xFF9F    // half-width Katakana
        | 0x20000..=0x2FFFF) // CJK Extensions B and later
}

/// Bigrams of CJK runs (a lone CJK character is its own term), and
/// lower-cased alphanumeric words elsewhere.
#[derive(Clone, Copy, Default)]
struct CjkBigrams;

impl Tokenizer for CjkBigrams {
    type TokenStream<'a> = PreTokenizedStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> PreTokenizedStream {
        let mut tokens = Vec::new();
        let mut push = |from: usize, to: usize, text: String| {
            let position = tokens.len();
            tokens.push(Token {
                offset_from: from,
                offset_to: to,
                position,
                text,
                position_length: 1,
            });
        };
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let end_of = |i: usize| chars.get(i).map_or(text.len(), |&(at, _)| at);
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i].1;
            if is_cjk(c) {
                let start = i;
                while i < chars.len() && is_cjk(chars[i].1) {
                    i += 1;
                }
                if i - start == 1 {
                    push(chars[start].0, end_of(i), c.to_string());
                }
                for j in start..i.saturating_sub(1) {
                    push(chars[j].0, end_of(j + 2), text[chars[j].0..end_of(j + 2)].to_string());
                }
            } else if c.is_alphanumeric() {
                let start = i;
                while i < chars.len() && chars[i].1.is_alphanumeric() && !is_cjk(chars[i].1) {
                    i += 1;
                }
                push(
                    chars[start].0,
                    end_of(i),
                    text[chars[start].0..end_of(i)].to_lowercase(),
                );
            } else {
                i += 1;
            }
        }
        PreTokenizedStream::from(PreTokenizedString {
            text: text.to_string(),
            tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn european_languages_stem_and_lower_case() {
        assert_eq!(Language::En.terms("Running SHOES, red"), ["run", "shoe", "red"]);
        assert_eq!(Language::Fr.terms("les chaussures"), ["le", "chaussur"]);
        assert_eq!(Language::Standard.terms("Running SHOES"), ["running", "shoes"]);
    }

    #[test]
    fn cjk_runs_become_bigrams_and_words_stay_whole() {
        assert_eq!(Language::Zh.terms("红色鞋子 Nike"), ["红色", "色鞋", "鞋子", "nike"]);
        assert_eq!(Language::Ja.terms("東"), ["東"]);
        assert_eq!(Language::Ko.terms("빨간 신발"), ["빨간", "신발"]);
    }

    #[test]
    fn unknown_language_names_the_field() {
        let err = Language::from_code("xx").unwrap_err().to_string();
        assert!(err.contains("language"), "{err}");
    }
}
