//! The report's charts, drawn as inline SVG by `plotters`: one point per
//! answer, its time to answer against the date and time it was asked (UTC),
//! each party with a marker shape and colour of its own, hollow, so one
//! party's points do not hide another's; the agreed limits drawn as dashed
//! lines; and a logarithmic time axis where the times span orders of
//! magnitude (a machine's answer in milliseconds beside a person's in hours).

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

/// One party's points: (when asked, ms since the epoch; time to answer, seconds).
pub struct Series {
    /// The party answering.
    pub party: String,
    /// Its points.
    pub points: Vec<(i64, f64)>,
}

/// An agreed limit, drawn across the chart.
pub struct Limit {
    /// What it is, such as "limit (high): 1h".
    pub label: String,
    /// The limit, in seconds.
    pub seconds: f64,
}

/// Colours for the series, told apart in print as well as on screen.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// Above this ratio of the longest time to the shortest, the time axis is logarithmic.
const LOG_SCALE_ABOVE: f64 = 50.0;

/// A scatter chart as an SVG document, or nothing when there is nothing to draw.
pub fn scatter(title: &str, series: &[Series], limits: &[Limit]) -> Result<String, String> {
    let times: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).collect();
    if times.is_empty() {
        return Ok(String::new());
    }
    let asked = series.iter().flat_map(|s| s.points.iter().map(|p| p.0 as f64));
    let (first, last) = asked.fold((f64::MAX, f64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let pad = ((last - first) * 0.05).max(60_000.0);
    let x = (first - pad)..(last + pad);
    // The shortest time shown is a millisecond: a log axis cannot reach zero.
    let all = times
        .iter()
        .chain(limits.iter().map(|l| &l.seconds))
        .map(|t| t.max(0.001));
    let (low, high) = all.fold((f64::MAX, 0.0_f64), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        if high / low > LOG_SCALE_ABOVE {
            let y = (low / 2.0..high * 2.0).log_scale();
            draw(&root, &format!("{title} (logarithmic time axis)"), x, y, series, limits)?;
        } else {
            draw(&root, title, x, 0.0..high * 1.2, series, limits)?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

fn draw<Y>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    x: Range<f64>,
    y: Y,
    series: &[Series],
    limits: &[Limit],
) -> Result<(), String>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let fail = |e: DrawingAreaErrorKind<_>| e.to_string();
    let (x0, x1) = (x.start, x.end);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(fail)?;
    // Ticks as fine as the span needs; the day once, in the axis's name, unless the span crosses days.
    let span = x1 - x0;
    let tick = match span {
        s if s < 600_000.0 => time::macros::format_description!("[hour]:[minute]:[second]"),
        s if s < 86_400_000.0 => time::macros::format_description!("[hour]:[minute]"),
        _ => time::macros::format_description!("[month]-[day] [hour]:[minute]"),
    };
    let day = time::macros::format_description!("[year]-[month]-[day]");
    let x_desc = match span < 86_400_000.0 {
        true => format!("when asked (UTC, {})", date((x0 + x1) / 2.0, day)),
        false => "when asked (UTC)".to_owned(),
    };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .x_labels(6)
        .x_label_formatter(&|ms| date(*ms, tick))
        .y_desc("time to answer")
        .y_label_formatter(&|s| duration(*s))
        .draw()
        .map_err(fail)?;
    for l in limits {
        let line = RGBColor(90, 90, 90).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new([(x0, l.seconds), (x1, l.seconds)], 8, 5, line))
            .map_err(fail)?
            .label(l.label.clone())
            .legend(move |(x, y)| PathElement::new([(x - 8, y), (x + 8, y)], line));
    }
    for (i, s) in series.iter().enumerate() {
        let style = COLOURS[i % COLOURS.len()].stroke_width(2);
        let points = s.points.iter().map(|&(at, secs)| (at as f64, secs.max(0.001)));
        // Past six parties the colours repeat, with another shape.
        let shape = (i + i / COLOURS.len()) % 3;
        let drawn = match shape {
            0 => chart.draw_series(points.map(|p| Circle::new(p, 5, style))),
            1 => chart.draw_series(points.map(|p| TriangleMarker::new(p, 6, style))),
            _ => chart.draw_series(points.map(|p| Cross::new(p, 5, style))),
        };
        drawn
            .map_err(fail)?
            .label(s.party.clone())
            .legend(move |c| match shape {
                0 => Circle::new(c, 5, style).into_dyn(),
                1 => TriangleMarker::new(c, 6, style).into_dyn(),
                _ => Cross::new(c, 5, style).into_dyn(),
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(fail)?;
    Ok(())
}

/// An instant, ms since the epoch, in UTC as `format` writes it.
fn date(ms: f64, format: &[time::format_description::BorrowedFormatItem<'_>]) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_default()
}

/// An axis time: "250ms", "4s", "2m30s", "3h".
fn duration(secs: f64) -> String {
    match secs {
        s if s < 1.0 => format!("{:.0}ms", s * 1000.0),
        s if s < 60.0 => format!("{}s", (s * 10.0).round() / 10.0),
        s if s < 3600.0 => match (s / 60.0).floor() as u64 {
            m if (s - m as f64 * 60.0).round() as u64 == 0 => format!("{m}m"),
            m => format!("{m}m{:.0}s", s - m as f64 * 60.0),
        },
        s => format!("{}h", (s / 360.0).round() / 10.0),
    }
}

#[cfg(test)]
mod tests {
    use crate::report::charts::*;

    #[test]
    fn axis_times_read_as_durations() {
        assert_eq!(duration(0.25), "250ms");
        assert_eq!(duration(4.0), "4s");
        assert_eq!(duration(150.0), "2m30s");
        assert_eq!(duration(120.0), "2m");
        assert_eq!(duration(3.0 * 3600.0), "3h");
    }

    #[test]
    fn times_spanning_orders_of_magnitude_get_a_logarithmic_axis() {
        let series = |secs: &[f64]| {
            vec![Series {
                party: "CHL".into(),
                points: secs.iter().enumerate().map(|(i, s)| (i as i64 * 60_000, *s)).collect(),
            }]
        };
        let wide = scatter("answers", &series(&[0.02, 3600.0]), &[]).unwrap();
        assert!(wide.contains("logarithmic"));
        let narrow = scatter("answers", &series(&[10.0, 30.0]), &[]).unwrap();
        assert!(!narrow.contains("logarithmic"));
    }
}
