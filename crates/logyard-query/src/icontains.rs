//! `x ILIKE '%words%'` without a regular expression.
//!
//! Arrow evaluates `LIKE '%words%'` with a substring search but `ILIKE` with a
//! case-insensitive regular expression, several times slower on log messages; the search
//! language's free-text terms are exactly such patterns. The optimizer rule here rewrites an
//! `ILIKE` whose pattern is a literal `%...%` of ASCII text with no other wildcard into
//! `icontains(x, 'words')`, which finds the first byte of the words in either case with
//! `memchr` and compares the rest ignoring ASCII case, without copying the value. A value
//! with non-ASCII characters is matched by a case-insensitive regular expression, as Arrow's
//! `ILIKE` does (Unicode case folding makes `K`, the Kelvin sign, match `k`), so the answer is
//! `ILIKE`'s in every case.
//!
//! Parquet text columns arrive as string views whose longer values sit in shared buffers (a
//! dictionary-encoded column's views all point into its dictionary). Those buffers are searched
//! once each, lower-cased, with `memchr`'s `memmem` (which looks for the words' rarest bytes,
//! not their first: `/` starts many searches and is in every request line), the matches kept
//! as a bit per byte, and a value holds the words when a match starts inside it and ends
//! before it does: a word or two read per row instead of a search per row.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder, ByteView, MAX_INLINE_VIEW_LEN, StringViewArray,
};
use arrow::buffer::{BooleanBuffer, Buffer};
use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::expr::{Like, ScalarFunction};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// `icontains(text, words)`: whether `text` holds `words` (lower-case ASCII), ignoring case.
#[derive(Debug)]
pub struct IContains {
    signature: Signature,
    /// The matches found in string-view buffers, for the calls the optimizer rule makes (one
    /// instance per expression of a query): every batch of a dictionary-encoded column points
    /// into the same dictionary, searched once here.
    kept: Option<Kept>,
}

impl PartialEq for IContains {
    fn eq(&self, other: &Self) -> bool {
        self.signature == other.signature
    }
}

impl Eq for IContains {}

impl std::hash::Hash for IContains {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.signature.hash(state);
    }
}

impl IContains {
    /// The function as registered: searches each batch afresh.
    pub fn udf() -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::from(Self { signature: Signature::string(2, Volatility::Immutable), kept: None }))
    }

    /// The function for one expression of one query: keeps what it found in buffers.
    fn udf_for_expression() -> Arc<ScalarUDF> {
        let kept = Some(Kept::default());
        Arc::new(ScalarUDF::from(Self { signature: Signature::string(2, Volatility::Immutable), kept }))
    }
}

/// Buffers searched, with where the needle starts in each (`None`: not ASCII). An entry holds
/// its buffer, so no other buffer can take its address while it is here.
#[derive(Default)]
struct Kept(std::sync::Mutex<std::collections::VecDeque<(Buffer, String, Starts)>>);

/// Where the needle starts in a buffer, a bit per byte; `None` when the buffer is not ASCII.
type Starts = Option<Arc<[u64]>>;

/// Buffers kept per expression (a row group's dictionary or a page each).
const KEPT_BUFFERS: usize = 16;

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kept")
    }
}

impl ScalarUDFImpl for IContains {
    fn name(&self) -> &str {
        "icontains"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [text, words] = args.args.as_slice() else { return exec_err!("icontains takes two arguments") };
        let words = match words {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(w)) | ScalarValue::Utf8View(Some(w)) | ScalarValue::LargeUtf8(Some(w)),
            ) => w.to_ascii_lowercase(),
            ColumnarValue::Scalar(s) if s.is_null() => {
                return Ok(ColumnarValue::Scalar(ScalarValue::Boolean(None)));
            }
            _ => return exec_err!("icontains: the words must be a text literal"),
        };
        let matcher = Matcher::new(&words).keeping(self.kept.as_ref());
        match text {
            ColumnarValue::Array(array) => Ok(ColumnarValue::Array(matcher.array(array)?)),
            ColumnarValue::Scalar(scalar) => {
                let array = matcher.array(&scalar.to_array()?)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?))
            }
        }
    }
}

/// Bytes of string-view buffers searched at most per value they answer for.
const BYTES_PER_VALUE: usize = 256;

/// The search for one lower-case ASCII needle.
struct Matcher<'a> {
    /// Lower-case ASCII.
    needle: String,
    /// The needle's substring search (SIMD, from its rarest bytes), for lower-cased buffers.
    finder: memchr::memmem::Finder<'static>,
    kept: Option<&'a Kept>,
    /// A case-insensitive expression for values that are not ASCII, as Arrow's `ILIKE`
    /// uses; made the first time such a value comes (most batches have none).
    unicode: std::cell::OnceCell<regex::Regex>,
}

impl<'a> Matcher<'a> {
    fn new(words: &str) -> Self {
        let finder = memchr::memmem::Finder::new(words.as_bytes()).into_owned();
        Self { needle: words.to_owned(), finder, kept: None, unicode: std::cell::OnceCell::new() }
    }

    fn keeping(mut self, kept: Option<&'a Kept>) -> Self {
        self.kept = kept;
        self
    }

    /// Where the needle starts in `buffer`, `None` when it is not ASCII; from `kept` when
    /// this buffer was searched before.
    fn buffer_matches(&self, buffer: &Buffer) -> Starts {
        let Some(kept) = self.kept else {
            return buffer.is_ascii().then(|| self.buffer_starts(buffer.as_slice()));
        };
        let mut kept = kept.0.lock().expect("icontains buffers");
        if let Some((_, _, starts)) = kept.iter().find(|(b, n, _)| b.ptr_eq(buffer) && *n == self.needle) {
            return starts.clone();
        }
        let starts: Starts = buffer.is_ascii().then(|| self.buffer_starts(buffer.as_slice()));
        if kept.len() == KEPT_BUFFERS {
            kept.pop_front();
        }
        kept.push_back((buffer.clone(), self.needle.clone(), starts.clone()));
        starts
    }

    /// Whether `value` holds the needle, ignoring case. An ASCII value is searched for the
    /// needle's first byte (either case) and compared with the rest there, without copying it.
    fn holds(&self, value: &str) -> Result<bool> {
        if self.needle.is_empty() {
            return Ok(true);
        }
        if !value.is_ascii() {
            return Ok(self.unicode()?.is_match(value));
        }
        Ok(self.matches(value.as_bytes()).next().is_some())
    }

    /// Where the needle starts in ASCII `hay`, ignoring case, in order.
    fn matches<'h>(&'h self, hay: &'h [u8]) -> impl Iterator<Item = usize> + 'h {
        let needle = self.needle.as_bytes();
        let (first, rest) = needle.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        let candidates = hay.len().checked_sub(needle.len()).map_or(&[][..], |last| &hay[..=last]);
        memchr::memchr2_iter(first, first.to_ascii_uppercase(), candidates)
            .filter(move |&at| hay[at + 1..at + needle.len()].eq_ignore_ascii_case(rest))
    }

    /// Where the needle starts in an ASCII buffer, ignoring case, overlapping matches
    /// included, as a bit per byte: the buffer lower-cased, then searched with the needle's
    /// `memmem` finder, which looks for its rarest bytes (a first byte such as `/` is in nearly
    /// every log message). A bit per byte rather than a list of matches: a value is then
    /// answered by the one or two words under it, wherever in the buffer it points (a
    /// dictionary's values are used in any order), not by a search of the list.
    fn buffer_starts(&self, hay: &[u8]) -> Arc<[u64]> {
        let lower: Vec<u8> = hay.iter().map(u8::to_ascii_lowercase).collect();
        let mut bits = vec![0u64; hay.len().div_ceil(64)];
        let mut from = 0;
        while let Some(at) = self.finder.find(&lower[from..]) {
            let at = from + at;
            bits[at / 64] |= 1 << (at % 64);
            from = at + 1;
        }
        bits.into()
    }

    /// String views: each data buffer that values use searched once (once per query when
    /// kept), each value answered from the matches in its buffer; `None` when that does not
    /// hold or pay (a buffer that is not ASCII, or more than [`BYTES_PER_VALUE`] bytes to
    /// search per value when nothing is kept).
    fn views(&self, array: &StringViewArray) -> Option<Result<BooleanArray>> {
        let needle = self.needle.len();
        let buffers = array.data_buffers();
        let mut used = vec![false; buffers.len()];
        let mut in_buffers = 0;
        for (i, &raw) in array.views().iter().enumerate() {
            if raw as u32 > MAX_INLINE_VIEW_LEN && array.is_valid(i) {
                *used.get_mut(ByteView::from(raw).buffer_index as usize)? = true;
                in_buffers += 1;
            }
        }
        let searched: usize = buffers.iter().zip(&used).filter(|(_, u)| **u).map(|(b, _)| b.len()).sum();
        if needle == 0 || (self.kept.is_none() && searched > BYTES_PER_VALUE * in_buffers + (64 << 10)) {
            return None;
        }
        let mut starts = Vec::with_capacity(buffers.len());
        for (buffer, used) in buffers.iter().zip(used) {
            starts.push(if used { self.buffer_matches(buffer)? } else { Arc::from([]) });
        }
        // A value in a buffer that holds the needle nowhere is answered without a look at its
        // bits; when no buffer holds it and no inline value is long enough to (a rare
        // phrase: most batches), the answer is all false.
        let found: Vec<bool> = starts.iter().map(|bits| bits.iter().any(|word| *word != 0)).collect();
        // Whether a value kept in a buffer holds a match that starts in it and ends in it.
        let in_buffer = |raw: u128| {
            let len = raw as u32 as usize;
            let view = ByteView::from(raw);
            let (buffer, from) = (view.buffer_index as usize, view.offset as usize);
            len >= needle && found.get(buffer) == Some(&true) && any_bit(&starts[buffer], from, from + len - needle)
        };
        if needle > MAX_INLINE_VIEW_LEN as usize {
            if !found.contains(&true) {
                return Some(Ok(BooleanArray::new(BooleanBuffer::new_unset(array.len()), array.nulls().cloned())));
            }
            // No inline value can hold the words: each value is a bit test, 64 values to a
            // word of the answer (a null's answer is hidden by its null).
            let views = array.views();
            let answer = BooleanBuffer::collect_bool(array.len(), |i| in_buffer(views[i]));
            return Some(Ok(BooleanArray::new(answer, array.nulls().cloned())));
        }
        let mut out = BooleanBufferBuilder::new(array.len());
        for (i, &raw) in array.views().iter().enumerate() {
            let len = raw as u32 as usize;
            let holds = if len < needle || array.is_null(i) {
                false
            } else if len <= MAX_INLINE_VIEW_LEN as usize {
                match self.holds(array.value(i)) {
                    Ok(holds) => holds,
                    Err(e) => return Some(Err(e)),
                }
            } else {
                in_buffer(raw)
            };
            out.append(holds);
        }
        Some(Ok(BooleanArray::new(out.finish(), array.nulls().cloned())))
    }

    fn unicode(&self) -> Result<&regex::Regex> {
        if let Some(regex) = self.unicode.get() {
            return Ok(regex);
        }
        let regex = regex::RegexBuilder::new(&regex::escape(&self.needle))
            .case_insensitive(true)
            .build()
            .map_err(|e| datafusion::error::DataFusionError::Execution(format!("icontains: {e}")))?;
        Ok(self.unicode.get_or_init(|| regex))
    }

    fn array(&self, array: &ArrayRef) -> Result<ArrayRef> {
        let test = |value: Option<&str>| value.map(|v| self.holds(v)).transpose();
        let out: BooleanArray = match array.data_type() {
            DataType::Utf8 => array.as_string::<i32>().iter().map(test).collect::<Result<_>>()?,
            DataType::LargeUtf8 => array.as_string::<i64>().iter().map(test).collect::<Result<_>>()?,
            DataType::Utf8View => match self.views(array.as_string_view()) {
                Some(out) => out?,
                None => array.as_string_view().iter().map(test).collect::<Result<_>>()?,
            },
            other => return exec_err!("icontains: text expected, got {other}"),
        };
        Ok(Arc::new(out))
    }
}

/// Rewrites `x [NOT] ILIKE '%ascii words%'` into `[NOT] icontains(x, 'ascii words')`.
#[derive(Debug, Default)]
pub struct ILikeAsContains;

impl OptimizerRule for ILikeAsContains {
    fn name(&self) -> &str {
        "ilike_as_icontains"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(&self, plan: LogicalPlan, _: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        plan.map_expressions(|e| e.transform_up(|e| Ok(rewrite(e))))
    }
}

fn rewrite(e: Expr) -> Transformed<Expr> {
    let Expr::Like(like) = &e else { return Transformed::no(e) };
    let Like { negated, expr, pattern, escape_char, case_insensitive: true } = like else {
        return Transformed::no(e);
    };
    let Expr::Literal(ScalarValue::Utf8(Some(p)) | ScalarValue::Utf8View(Some(p)), _) = pattern.as_ref() else {
        return Transformed::no(e);
    };
    let Some(words) = contained_words(p, escape_char.unwrap_or('\\')) else { return Transformed::no(e) };
    let call = Expr::ScalarFunction(ScalarFunction::new_udf(
        IContains::udf_for_expression(),
        vec![expr.as_ref().clone(), Expr::Literal(ScalarValue::Utf8(Some(words)), None)],
    ));
    Transformed::yes(if *negated { Expr::Not(Box::new(call)) } else { call })
}

/// The words of a `%words%` pattern: ASCII, at least one character, no wildcard but the two
/// `%` around (an escaped `%`, `_` or escape character stands for itself).
fn contained_words(pattern: &str, escape: char) -> Option<String> {
    let inner = pattern.strip_prefix('%')?.strip_suffix('%')?;
    if !inner.is_ascii() {
        return None;
    }
    let mut words = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c == escape => words.push(chars.next()?),
            '%' | '_' => return None,
            c => words.push(c),
        }
    }
    // `%\%` would end in a lone escape: the trailing `%` was escaped, not a wildcard.
    (!words.is_empty() && !ends_with_escape(inner, escape)).then_some(words)
}

/// Whether `s` ends with an odd number of escape characters (so the `%` after it is escaped).
fn ends_with_escape(s: &str, escape: char) -> bool {
    s.chars().rev().take_while(|&c| c == escape).count() % 2 == 1
}

/// Whether a bit from `from` to `to` (both included) is set.
fn any_bit(bits: &[u64], from: usize, to: usize) -> bool {
    let (first, last) = (from / 64, to / 64);
    let low = u64::MAX << (from % 64);
    let high = u64::MAX >> (63 - to % 64);
    let Some(words) = bits.get(first..=last) else { return false };
    match words {
        [one] => one & low & high != 0,
        [head, middle @ .., tail] => head & low != 0 || middle.iter().any(|w| *w != 0) || tail & high != 0,
        [] => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;

    #[test]
    fn only_plain_contains_patterns_are_rewritten() {
        assert_eq!(contained_words("%checkout%", '\\').as_deref(), Some("checkout"));
        assert_eq!(contained_words(r"%100\%%", '\\').as_deref(), Some("100%"));
        assert_eq!(contained_words(r"%a\_b\\c%", '\\').as_deref(), Some(r"a_b\c"));
        for kept in ["checkout%", "%check%out%", "%a_b%", "%%", "%", "%café%", r"%abc\%"] {
            assert_eq!(contained_words(kept, '\\'), None, "{kept}");
        }
    }

    /// The same answers as Arrow's `ILIKE` (a case-insensitive regular expression), for ASCII
    /// and Unicode values, nulls included.
    #[test]
    fn answers_as_arrow_ilike_does() {
        let values = StringArray::from(vec![
            Some("POST /Checkout 502"),
            Some("post /checkout"),
            Some("GET /cart"),
            None,
            Some("KELVIN: \u{212A}ey check-out"),
            Some("\u{212A}EY"),
            Some("straße CHECKOUT"),
            Some("ſtate"),
            Some(""),
            Some("line one\ncheckout on line two"),
            Some("aaAB"),
            Some("checkouT"),
            Some("ab"),
        ]);
        let array: ArrayRef = Arc::new(values.clone());
        for words in ["checkout", "key", "state", "t /c", "a", "aab", "ab", "ß"] {
            if !words.is_ascii() {
                continue;
            }
            let ours = Matcher::new(words).array(&array).unwrap();
            let pattern = StringArray::new_scalar(format!("%{words}%"));
            let arrows = arrow::compute::kernels::comparison::ilike(&values, &pattern).unwrap();
            assert_eq!(ours.as_boolean(), &arrows, "{words}");
        }
    }

    /// String views answered from their buffers' matches give `ILIKE`'s answers: values that
    /// share bytes (as a dictionary's do), a match across two values' bytes (not a match of
    /// either), values short enough to sit in their view, nulls, and a sliced array.
    #[test]
    fn a_range_of_bits_is_checked_across_words() {
        let mut bits = vec![0u64; 4];
        for at in [63, 64, 200] {
            bits[at / 64] |= 1 << (at % 64);
        }
        let any = |from, to| any_bit(&bits, from, to);
        assert!(any(0, 63) && any(63, 63) && any(64, 64) && any(60, 70) && any(65, 255) && any(200, 200));
        assert!(!any(0, 62) && !any(65, 199) && !any(201, 255) && !any(100, 150));
    }

    #[test]
    fn views_answer_from_their_buffers_as_arrow_ilike_does() {
        use arrow::array::StringViewBuilder;
        let mut builder = StringViewBuilder::new().with_fixed_block_size(64);
        let long = [
            "GET /Products/4523 200",
            "GET /products/45 200",
            "see /PRODUCTS/4523",
            "at /products/4",
            "523 ok here now",
        ];
        for (i, value) in long.iter().chain(["/products/4523", "/x", "short"].iter()).enumerate() {
            if i % 4 == 3 {
                builder.append_null();
            }
            builder.append_value(value);
        }
        let built = builder.finish();
        // Rows that reuse the bytes of others (a dictionary's rows do), in another order.
        let shared =
            arrow::compute::take(&built, &arrow::array::UInt32Array::from(vec![2, 0, 0, 5, 1, 3, 7, 4]), None).unwrap();
        let sliced = built.slice(1, 6);
        for array in [Arc::new(built) as ArrayRef, shared, Arc::new(sliced)] {
            let views = array.as_string_view();
            let plain = StringArray::from_iter(views.iter());
            // Words longer than an inline value and in no buffer: the answer without a look at
            // the values.
            for words in ["/products/4523", "products/45", "4523", "o", "s/4", "45 200", "not there", "/products/45230"]
            {
                let kept = Kept::default();
                // Twice with the buffers kept: the second answers from what the first found.
                for matcher in [
                    Matcher::new(words),
                    Matcher::new(words).keeping(Some(&kept)),
                    Matcher::new(words).keeping(Some(&kept)),
                ] {
                    let ours = matcher.views(views).expect("searched in the buffers").unwrap();
                    let pattern = StringArray::new_scalar(format!("%{words}%"));
                    let arrows = arrow::compute::kernels::comparison::ilike(&plain, &pattern).unwrap();
                    assert_eq!(ours, arrows, "{words} in {views:?}");
                }
            }
        }
    }

    /// A buffer with non-ASCII bytes is not searched as a whole: the value-by-value search,
    /// with its Unicode case folding, answers.
    #[test]
    fn views_with_unicode_are_searched_value_by_value() {
        let values = arrow::array::StringViewArray::from(vec!["\u{212A}ELVIN and more text", "kelvin and more text"]);
        assert!(Matcher::new("kelvin").views(&values).is_none());
        let array: ArrayRef = Arc::new(values);
        let ours = Matcher::new("kelvin").array(&array).unwrap();
        assert_eq!(ours.as_boolean(), &BooleanArray::from(vec![true, true]));
    }
}
