//! The report's charts, drawn as inline SVG by `plotters`: one point per
//! answer, its time to answer against when it happened, one series per party.

use plotters::prelude::*;

/// One party's points: (hours since the report's start, time to answer in `unit`).
pub struct Series {
    /// The party answering.
    pub party: String,
    /// Its points.
    pub points: Vec<(f64, f64)>,
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

/// A scatter chart as an SVG document, or a note when there is nothing to draw.
pub fn scatter(title: &str, unit: &str, series: &[Series]) -> Result<String, String> {
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).collect();
    if all.is_empty() {
        return Ok(String::new());
    }
    let x_max = all.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-3) * 1.05;
    let y_max = all.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-3) * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("hours since the first entry")
            .y_desc(unit)
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, s) in series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(s.points.iter().map(|p| Circle::new(*p, 4, colour.filled())))
                .map_err(|e| e.to_string())?
                .label(s.party.clone())
                .legend(move |(x, y)| Circle::new((x, y), 4, colour.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
