//! A small page-layout layer over `pdf-writer` for the document built-ins:
//! A4 pages, the standard Helvetica and Helvetica-Bold fonts (no embedding, so
//! the binary stays small and the output deterministic), WinAnsi text, and
//! automatic page breaks with a "Page i of n" footer.
//!
//! Text widths come from Helvetica's published metrics so right-aligned
//! amounts line up and long text wraps inside its column.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

pub(crate) const PAGE_WIDTH: f32 = 595.0;
pub(crate) const PAGE_HEIGHT: f32 = 842.0;
pub(crate) const MARGIN: f32 = 50.0;
/// Content never goes below this line; the footer lives under it.
const BOTTOM_LIMIT: f32 = 70.0;
const FOOTER_Y: f32 = 40.0;

const REGULAR: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Weight {
    Regular,
    Bold,
}

/// Helvetica advance widths (1/1000 em) for ASCII 32..=126.
const HELVETICA_WIDTHS: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278,
    278, // ' '..'/'
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, // '0'..'9'
    278, 278, 584, 584, 584, 556, 1015, // ':'..'@'
    667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, // 'A'..'M'
    722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, // 'N'..'Z'
    278, 278, 278, 469, 556, 333, // '['..'`'
    556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, // 'a'..'m'
    556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, // 'n'..'z'
    334, 260, 334, 584, // '{'..'~'
];

/// Width of `text` in points at `size`. Bold is about 5% wider than regular
/// on average; over-estimating keeps bold text inside its column.
pub(crate) fn text_width(text: &str, weight: Weight, size: f32) -> f32 {
    let units: u32 = text
        .chars()
        .map(|c| match c as u32 {
            code @ 32..=126 => u32::from(HELVETICA_WIDTHS[(code - 32) as usize]),
            _ => 556,
        })
        .sum();
    let factor = if weight == Weight::Bold { 1.06 } else { 1.0 };
    units as f32 * size / 1000.0 * factor
}

/// Encodes text as WinAnsi (Windows-1252), the encoding the page fonts
/// declare. Characters outside it become `?`; control characters a space.
pub(crate) fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{ff}' => c as u32 as u8,
            '€' => 0x80,
            '‚' => 0x82,
            'ƒ' => 0x83,
            '„' => 0x84,
            '…' => 0x85,
            '†' => 0x86,
            '‡' => 0x87,
            'ˆ' => 0x88,
            '‰' => 0x89,
            'Š' => 0x8a,
            '‹' => 0x8b,
            'Œ' => 0x8c,
            'Ž' => 0x8e,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            '˜' => 0x98,
            '™' => 0x99,
            'š' => 0x9a,
            '›' => 0x9b,
            'œ' => 0x9c,
            'ž' => 0x9e,
            'Ÿ' => 0x9f,
            c if c.is_control() => b' ',
            _ => b'?',
        })
        .collect()
}

/// Greedy word wrap to `width` points; words wider than a line are broken.
/// At most `lines_max` lines; when text is cut the last line ends in "...".
pub(crate) fn wrap(
    text: &str,
    weight: Weight,
    size: f32,
    width: f32,
    lines_max: usize,
) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            let candidate = if line.is_empty() {
                word.to_owned()
            } else {
                format!("{line} {word}")
            };
            if text_width(&candidate, weight, size) <= width {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            // Break an over-long word by characters.
            for c in word.chars() {
                let mut extended = line.clone();
                extended.push(c);
                if text_width(&extended, weight, size) > width && !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                    line.push(c);
                } else {
                    line = extended;
                }
            }
        }
        lines.push(line);
        if lines.len() > lines_max {
            break;
        }
    }
    while lines.last().is_some_and(String::is_empty) && lines.len() > 1 {
        lines.pop();
    }
    if lines.len() > lines_max {
        lines.truncate(lines_max);
        if let Some(last) = lines.last_mut() {
            *last = ellipsize(last, weight, size, width);
        }
    }
    lines
}

/// `text` cut to fit `width` with a trailing "...".
pub(crate) fn ellipsize(text: &str, weight: Weight, size: f32, width: f32) -> String {
    let mut out: String = text.to_owned();
    while !out.is_empty() && text_width(&format!("{out}..."), weight, size) > width {
        out.pop();
    }
    format!("{}...", out.trim_end())
}

/// Text cut to one line of `width` points (with "..." when cut).
pub(crate) fn fit(text: &str, weight: Weight, size: f32, width: f32) -> String {
    if text_width(text, weight, size) <= width {
        text.to_owned()
    } else {
        ellipsize(text, weight, size, width)
    }
}

/// Lays text out top-down over as many A4 pages as needed.
pub(crate) struct Document {
    pages: Vec<Content>,
    /// Baseline of the next line on the current page.
    pub(crate) y: f32,
    title: String,
}

impl Document {
    pub(crate) fn new(title: &str) -> Document {
        Document {
            pages: vec![Content::new()],
            y: PAGE_HEIGHT - MARGIN,
            title: title.to_owned(),
        }
    }

    /// Starts a new page when fewer than `height` points are left.
    /// Returns true when it did.
    pub(crate) fn ensure_room(&mut self, height: f32) -> bool {
        if self.y - height >= BOTTOM_LIMIT {
            return false;
        }
        self.pages.push(Content::new());
        self.y = PAGE_HEIGHT - MARGIN;
        true
    }

    /// Text with its left edge at `x` on baseline `y` of the current page.
    pub(crate) fn text(&mut self, x: f32, y: f32, text: &str, weight: Weight, size: f32) {
        let font = if weight == Weight::Bold {
            BOLD
        } else {
            REGULAR
        };
        let encoded = win_ansi(text);
        let page = self.pages.last_mut().expect("a document always has a page");
        page.begin_text();
        page.set_font(font, size);
        page.next_line(x, y);
        page.show(Str(&encoded));
        page.end_text();
    }

    /// Text with its right edge at `right`.
    pub(crate) fn text_right(&mut self, right: f32, y: f32, text: &str, weight: Weight, size: f32) {
        let x = right - text_width(text, weight, size);
        self.text(x, y, text, weight, size);
    }

    /// A horizontal rule across the text area at `y`.
    pub(crate) fn rule(&mut self, y: f32, width: f32) {
        let page = self.pages.last_mut().expect("a document always has a page");
        page.set_line_width(width);
        page.move_to(MARGIN, y);
        page.line_to(PAGE_WIDTH - MARGIN, y);
        page.stroke();
    }

    pub(crate) fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// Adds the footers and serializes the PDF. Deterministic: no dates, no
    /// random file id.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let page_count = self.pages.len();
        let title = self.title.clone();
        for index in 0..page_count {
            let footer = format!("{title} - Page {} of {page_count}", index + 1);
            let width = text_width(&footer, Weight::Regular, 8.0);
            let encoded = win_ansi(&footer);
            let page = &mut self.pages[index];
            page.begin_text();
            page.set_font(REGULAR, 8.0);
            page.next_line((PAGE_WIDTH - width) / 2.0, FOOTER_Y);
            page.show(Str(&encoded));
            page.end_text();
        }

        // Object ids: 1 catalog, 2 page tree, 3 regular font, 4 bold font,
        // 5 info, then (page, content) pairs.
        let catalog_id = Ref::new(1);
        let tree_id = Ref::new(2);
        let regular_id = Ref::new(3);
        let bold_id = Ref::new(4);
        let info_id = Ref::new(5);
        let page_ids: Vec<Ref> = (0..page_count)
            .map(|index| Ref::new(6 + 2 * index as i32))
            .collect();

        let mut pdf = Pdf::new();
        pdf.catalog(catalog_id).pages(tree_id);
        pdf.pages(tree_id)
            .kids(page_ids.iter().copied())
            .count(page_count as i32);
        pdf.type1_font(regular_id)
            .base_font(Name(b"Helvetica"))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
        pdf.type1_font(bold_id)
            .base_font(Name(b"Helvetica-Bold"))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
        pdf.document_info(info_id)
            .title(TextStr(&title))
            .producer(TextStr("jecp-hub"));
        for (page_id, content) in page_ids.iter().zip(self.pages) {
            let content_id = Ref::new(page_id.get() + 1);
            let mut page = pdf.page(*page_id);
            page.media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT));
            page.parent(tree_id);
            page.contents(content_id);
            let mut resources = page.resources();
            resources
                .fonts()
                .pair(REGULAR, regular_id)
                .pair(BOLD, bold_id);
            resources.finish();
            page.finish();
            pdf.stream(content_id, &content.finish());
        }
        pdf.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_follow_helvetica_metrics() {
        assert_eq!(text_width("0", Weight::Regular, 1000.0), 556.0);
        assert_eq!(
            text_width("Wi", Weight::Regular, 10.0),
            (944.0 + 222.0) / 100.0
        );
        assert!(text_width("abc", Weight::Bold, 10.0) > text_width("abc", Weight::Regular, 10.0));
    }

    #[test]
    fn encodes_win_ansi() {
        assert_eq!(
            win_ansi("A€é—\u{1F600}\t"),
            vec![b'A', 0x80, 0xe9, 0x97, b'?', b' ']
        );
    }

    #[test]
    fn wraps_and_ellipsizes() {
        let lines = wrap(
            "one two three four five six seven",
            Weight::Regular,
            10.0,
            60.0,
            10,
        );
        assert!(lines.len() > 1);
        for line in &lines {
            assert!(text_width(line, Weight::Regular, 10.0) <= 60.0, "{line}");
        }
        let long_word = wrap(&"x".repeat(200), Weight::Regular, 10.0, 50.0, 2);
        assert_eq!(long_word.len(), 2);
        assert!(long_word[1].ends_with("..."));
        assert_eq!(
            wrap("", Weight::Regular, 10.0, 50.0, 3),
            vec![String::new()]
        );
        assert_eq!(fit("short", Weight::Regular, 10.0, 100.0), "short");
        assert!(fit(&"y".repeat(100), Weight::Regular, 10.0, 100.0).ends_with("..."));
    }

    #[test]
    fn pages_break_and_output_is_deterministic() {
        let build = || {
            let mut document = Document::new("Test");
            for index in 0..120 {
                document.ensure_room(14.0);
                let y = document.y;
                document.text(MARGIN, y, &format!("line {index}"), Weight::Regular, 10.0);
                document.y -= 14.0;
            }
            assert!(document.page_count() > 1);
            document.finish()
        };
        let first = build();
        assert!(first.starts_with(b"%PDF-"));
        assert_eq!(first, build());
    }
}
