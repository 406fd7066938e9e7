//! The dashboard's charts: SVG drawn on the server with `plotters`, each with a `<title>` and a
//! `<desc>` stating its numbers, so a screen reader reads what the picture shows.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::health::{Series, WINDOW};

const WIDTH: u32 = 560;
const HEIGHT: u32 = 260;

/// Okabe and Ito's palette: told apart with the common kinds of colour blindness.
const COLOURS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(0, 0, 0),
];

fn colour(index: usize) -> RGBColor {
    COLOURS[index % COLOURS.len()]
}

/// One set of bars in a bar chart: a name and one value per category.
pub struct Bars {
    pub name: String,
    pub values: Vec<f64>,
}

/// Grouped bars: one group per category, one bar per set. `id` names the chart in the page.
pub fn bars(id: &str, title: &str, y_label: &str, categories: &[String], sets: &[Bars]) -> String {
    let mut desc = Vec::new();
    for set in sets {
        let values: Vec<String> = categories
            .iter()
            .zip(&set.values)
            .map(|(category, value)| format!("{category}: {}", number(*value)))
            .collect();
        desc.push(format!("{}: {}", set.name, values.join(", ")));
    }
    let drawn = draw(|root| {
        let max = sets
            .iter()
            .flat_map(|set| set.values.iter().copied())
            .fold(0.0_f64, f64::max);
        let n = categories.len().max(1);
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(56)
            // Integer ranges are inclusive in plotters: `0..n - 1` is n segments. A single
            // category gets two (a range of one value has no width to draw in).
            .build_cartesian_2d((0..(n - 1).max(1)).into_segmented(), 0.0..headroom(max))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|value| match value {
                SegmentValue::CenterOf(index) | SegmentValue::Exact(index) => {
                    categories.get(*index).cloned().unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .y_desc(y_label)
            .draw()?;
        // One category's width in pixels, as the chart maps it.
        let left_edge = chart.backend_coord(&(SegmentValue::Exact(0), 0.0)).0;
        let right_edge = chart.backend_coord(&(SegmentValue::Exact(1), 0.0)).0;
        let slot = f64::from(right_edge - left_edge);
        let width = (slot * 0.8) / sets.len().max(1) as f64;
        for (index, set) in sets.iter().enumerate() {
            let fill = colour(index).filled();
            let left = slot * 0.1 + width * index as f64;
            let right = slot - left - width;
            chart
                .draw_series(set.values.iter().enumerate().map(|(category, value)| {
                    let mut bar = Rectangle::new(
                        [
                            (SegmentValue::Exact(category), 0.0),
                            (SegmentValue::Exact(category + 1), *value),
                        ],
                        fill,
                    );
                    bar.set_margin(0, 0, pixels(left), pixels(right));
                    bar
                }))?
                .label(set.name.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], fill));
        }
        if sets.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        Ok(())
    });
    finish(id, title, &desc.join("; "), drawn)
}

/// Lines over the last [`WINDOW`]: x is seconds before now.
pub fn lines(id: &str, title: &str, y_label: &str, series: &[(String, Series)]) -> String {
    let desc: Vec<String> = series
        .iter()
        .map(|(name, points)| {
            let last = points.last().map_or(0.0, |(_, value)| *value);
            let peak = points.iter().map(|(_, value)| *value).fold(0.0, f64::max);
            format!("{name}: now {}, peak {}", number(last), number(peak))
        })
        .collect();
    let desc = if desc.is_empty() {
        "no data yet".to_owned()
    } else {
        desc.join("; ")
    };
    let drawn = draw(|root| {
        let max = series
            .iter()
            .flat_map(|(_, points)| points.iter().map(|(_, value)| *value))
            .fold(0.0_f64, f64::max);
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(-WINDOW.as_secs_f64()..0.0, 0.0..headroom(max))?;
        chart
            .configure_mesh()
            .x_desc("seconds ago")
            .y_desc(y_label)
            .draw()?;
        for (index, (name, points)) in series.iter().enumerate() {
            let stroke = colour(index).stroke_width(2);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), stroke))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], stroke));
        }
        if !series.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        Ok(())
    });
    finish(id, title, &desc, drawn)
}

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// Runs `paint` on a fresh SVG canvas and returns the SVG text.
fn draw(
    paint: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> DrawResult,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        paint(&root).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Names the SVG (or, when it could not be drawn, one saying why) for assistive technology: `role="img"`, a `<title>` and a `<desc>`.
fn finish(id: &str, title: &str, desc: &str, drawn: Result<String, String>) -> String {
    let svg = match drawn {
        Ok(svg) => svg,
        Err(why) => {
            tracing::warn!("chart {id} could not be drawn: {why}");
            format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\"><text x=\"12\" y=\"24\">chart not drawn: {}</text></svg>",
                maud::html! { (why) }.into_string()
            )
        }
    };
    let title_id = format!("{id}-title");
    let desc_id = format!("{id}-desc");
    let labels = maud::html! {
        title id=(title_id) { (title) }
        desc id=(desc_id) { (desc) }
    }
    .into_string();
    let opened = svg.replacen(
        "<svg ",
        &format!("<svg id=\"{id}\" class=\"chart\" role=\"img\" aria-labelledby=\"{title_id} {desc_id}\" "),
        1,
    );
    match opened.find('>') {
        Some(end) => format!("{}{labels}{}", &opened[..=end], &opened[end + 1..]),
        None => opened,
    }
}

/// A little room above the tallest bar or line, and a visible axis when everything is zero.
fn headroom(max: f64) -> f64 {
    if max > 0.0 { max * 1.15 } else { 1.0 }
}

fn pixels(value: f64) -> u32 {
    // Bars are a few hundred pixels wide at most.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let pixels = value.max(0.0).round() as u32;
    pixels
}

/// A number as a person reads it: whole numbers without decimals, others with two.
pub fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_chart_is_an_svg_with_its_numbers_in_words() {
        let chart = bars(
            "funnel",
            "Activity funnel",
            "users",
            &["page_view".to_owned(), "purchase".to_owned()],
            &[Bars {
                name: "users".to_owned(),
                values: vec![12.0, 2.5],
            }],
        );
        assert!(chart.starts_with("<svg id=\"funnel\""), "{}", chart);
        assert!(chart.contains("aria-labelledby=\"funnel-title funnel-desc\""));
        assert!(chart.contains("<title id=\"funnel-title\">Activity funnel</title>"));
        assert!(chart.contains("users: page_view: 12, purchase: 2.50"));
        assert!(chart.contains("<rect"), "bars are drawn");
        // One category, two sets: the case that once drew bars of negative width.
        let pair = bars(
            "pair",
            "t",
            "n",
            &["only".to_owned()],
            &[
                Bars {
                    name: "a".to_owned(),
                    values: vec![3.0],
                },
                Bars {
                    name: "b".to_owned(),
                    values: vec![1.0],
                },
            ],
        );
        assert!(!pair.contains("width=\"-"), "{pair}");
        for fill in ["#0072B2", "#E69F00"] {
            let widest = pair
                .split("<rect ")
                .filter(|rect| rect.contains(&format!("fill=\"{fill}\"")))
                .filter_map(|rect| {
                    rect.split("width=\"")
                        .nth(1)?
                        .split('"')
                        .next()?
                        .parse()
                        .ok()
                })
                .fold(0.0_f64, f64::max);
            assert!(widest > 20.0, "a visible bar of each set ({fill}): {pair}");
        }
        assert!(chart.contains("page_view"), "categories are labelled");
    }

    #[test]
    fn titles_are_escaped() {
        let chart = lines("health", "a <b> & c", "per second", &[]);
        assert!(chart.contains("a &lt;b&gt; &amp; c"), "{}", chart);
        assert!(chart.contains("no data yet"));
    }
}
