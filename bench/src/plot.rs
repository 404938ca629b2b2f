//! The plots of a report, as SVG (plotters, no font or image library needed):
//! latency CDF per target, CPU per call per target, and for ramps the success
//! rate and p99 latency against the offered rate.

use std::path::Path;

use anyhow::{Result, anyhow};
use hdrhistogram::Histogram as Hdr;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::report::RampRow;
use crate::stats;
use crate::target::TargetKind;

const SIZE: (u32, u32) = (960, 600);

/// One colour per target, the same in every plot.
pub fn color(t: TargetKind) -> RGBColor {
    match t {
        TargetKind::Sipring => RGBColor(128, 0, 160),
        TargetKind::SipringRelay => RGBColor(200, 100, 220),
        TargetKind::Kamailio => RGBColor(200, 30, 30),
        TargetKind::KamailioStateless => RGBColor(230, 140, 20),
        TargetKind::RelayStd => RGBColor(30, 90, 200),
        TargetKind::RelayGlommio => RGBColor(20, 150, 60),
    }
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("plot: {e}")
}

/// Highest percentile shown, in "nines" (5: 99.999 %).
const MAX_NINES: f64 = 5.0;

/// A quantile on the "nines" scale: 0.9 -> 1, 0.99 -> 2, 0.999 -> 3.
fn nines(q: f64) -> f64 {
    if q >= 1.0 {
        MAX_NINES
    } else {
        (-(1.0 - q).log10()).clamp(0.0, MAX_NINES)
    }
}

fn nines_label(y: &f64) -> String {
    let pct = 100.0 * (1.0 - 10f64.powf(-*y));
    let decimals = (y.round() as usize).saturating_sub(2);
    format!("{pct:.decimals$}%")
}

/// The latency CDF of each target: the fraction of timed requests answered
/// within x ms, on a "nines" scale (90 %, 99 %, 99.9 % ... evenly spaced) so
/// the tail is visible. sipp's clock steps once per kernel tick (4 ms at
/// `CONFIG_HZ=250`), so the curves are staircases.
pub fn latency_cdf(path: &Path, title: &str, series: &[(TargetKind, Hdr<u64>)]) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let x_max = series
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(_, h)| h.max() as f64 / 1000.0)
        .fold(2.0_f64, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..MAX_NINES)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("latency, ms (sipp response time, one kernel tick resolution)")
        .y_desc("requests answered within x")
        .y_labels(MAX_NINES as usize + 1)
        .y_label_formatter(&nines_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for (target, h) in series {
        let pts = stats::cdf_points(h);
        if pts.is_empty() {
            continue;
        }
        let mut steps = vec![(0.0, nines(pts[0].1))];
        let mut prev = nines(pts[0].1);
        for &(x, q) in &pts[1..] {
            let x = x.min(x_max);
            steps.push((x, prev));
            prev = nines(q);
            steps.push((x, prev));
        }
        steps.push((x_max, prev));
        let c = color(*target);
        chart
            .draw_series(LineSeries::new(steps, c.stroke_width(2)))
            .map_err(err)?
            .label(target.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// CPU per call of each target: bar = median, whisker = min..max of the runs.
pub fn cpu_per_call(path: &Path, title: &str, series: &[(TargetKind, Vec<f64>)]) -> Result<()> {
    let bars: Vec<(TargetKind, f64, f64, f64)> = series
        .iter()
        .filter_map(|(t, v)| {
            let med = stats::median(v)?;
            let (lo, hi) = stats::min_max(v)?;
            Some((*t, med, lo, hi))
        })
        .collect();
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let y_max = bars.iter().map(|b| b.3).fold(1.0_f64, f64::max) * 1.15;
    let n = bars.len().max(1) as u32;
    let names: Vec<&str> = bars.iter().map(|b| b.0.name()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((0u32..n - 1).into_segmented(), 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("CPU per call, µs (utime+stime of the target)")
        .x_labels(n as usize)
        .label_style(("sans-serif", 15))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i as usize).copied().unwrap_or("").to_owned(),
            _ => String::new(),
        })
        .draw()
        .map_err(err)?;
    for (i, (t, med, _, _)) in bars.iter().enumerate() {
        let c = color(*t);
        chart
            .draw_series(
                plotters::series::Histogram::vertical(&chart)
                    .style(c.mix(0.75).filled())
                    .margin(30)
                    .data([(i as u32, *med)]),
            )
            .map_err(err)?;
    }
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, med, lo, hi))| {
            ErrorBar::new_vertical(
                SegmentValue::CenterOf(i as u32),
                *lo,
                *med,
                *hi,
                BLACK.stroke_width(2),
                16,
            )
        }))
        .map_err(err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, med, _, hi))| {
            Text::new(
                format!("{med:.0} µs"),
                (SegmentValue::CenterOf(i as u32), *hi + y_max * 0.05),
                ("sans-serif", 17),
            )
        }))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// A ramp: success rate (top) and p99 latency (bottom) against the offered
/// rate, one line per target.
pub fn ramp(path: &Path, title: &str, rows: &[RampRow]) -> Result<()> {
    let root = SVGBackend::new(path, (SIZE.0, SIZE.1 + 200)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically((SIZE.1 + 200) / 2);
    let x_max = rows
        .iter()
        .flat_map(|r| r.points.iter().map(|p| f64::from(p.offered_rate)))
        .fold(1.0_f64, f64::max)
        * 1.05;
    let y_min = rows
        .iter()
        .flat_map(|r| r.points.iter().map(|p| p.success_pct))
        .fold(100.0_f64, f64::min)
        .clamp(0.0, 99.0);
    let p99_max = rows
        .iter()
        .flat_map(|r| r.points.iter().map(|p| p.p99_ms))
        .filter(|x| x.is_finite())
        .fold(10.0_f64, f64::max)
        * 1.5;
    let mut up = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, y_min.floor()..100.5)
        .map_err(err)?;
    up.configure_mesh()
        .label_style(("sans-serif", 14))
        .x_desc("offered calls/s")
        .y_desc("successful calls, %")
        .draw()
        .map_err(err)?;
    let mut down = ChartBuilder::on(&bottom)
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, (1.0..p99_max).log_scale())
        .map_err(err)?;
    down.configure_mesh()
        .label_style(("sans-serif", 14))
        .x_desc("offered calls/s")
        .y_desc("p99 latency, ms (log; below 1 shown as 1)")
        .draw()
        .map_err(err)?;
    for r in rows {
        let c = color(r.target);
        let succ: Vec<(f64, f64)> = r
            .points
            .iter()
            .map(|p| (f64::from(p.offered_rate), p.success_pct))
            .collect();
        let p99: Vec<(f64, f64)> = r
            .points
            .iter()
            .filter(|p| p.p99_ms.is_finite())
            .map(|p| (f64::from(p.offered_rate), p.p99_ms.max(1.0)))
            .collect();
        up.draw_series(LineSeries::new(succ.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label(r.target.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        up.draw_series(succ.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(err)?;
        down.draw_series(LineSeries::new(p99.clone(), c.stroke_width(2)))
            .map_err(err)?;
        down.draw_series(p99.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(err)?;
    }
    up.configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Limit, RampPoint};

    #[test]
    fn nines_scale() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert_eq!(nines(1.0), MAX_NINES);
        assert_eq!(nines_label(&0.0), "0%");
        assert_eq!(nines_label(&2.0), "99%");
        assert_eq!(nines_label(&3.0), "99.9%");
    }

    #[test]
    fn writes_svg_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = stats::new_histogram();
        for ms in [0.0, 0.0, 1.0, 3.0] {
            stats::record_ms(&mut h, ms);
        }
        let cdf = dir.path().join("cdf.svg");
        latency_cdf(
            &cdf,
            "t",
            &[
                (TargetKind::Kamailio, h.clone()),
                (TargetKind::RelayStd, stats::new_histogram()),
            ],
        )
        .unwrap();
        let cpu = dir.path().join("cpu.svg");
        cpu_per_call(
            &cpu,
            "t",
            &[
                (TargetKind::Kamailio, vec![330.0, 340.0, 350.0]),
                (TargetKind::RelayStd, vec![40.0]),
            ],
        )
        .unwrap();
        let ramp_svg = dir.path().join("ramp.svg");
        let row = RampRow {
            scenario: "invite".into(),
            target: TargetKind::Kamailio,
            highest_clean: vec![2000],
            highest_clean_median: Some(2000.0),
            limits: vec![Limit::Failures],
            points: vec![
                RampPoint {
                    drops: Default::default(),
                    offered_rate: 1000,
                    success_pct: 100.0,
                    p99_ms: 1.0,
                    cpu_us_per_call: Some(300.0),
                    achieved_rate: Some(1000.0),
                },
                RampPoint {
                    drops: Default::default(),
                    offered_rate: 2000,
                    success_pct: 99.0,
                    p99_ms: 30.0,
                    cpu_us_per_call: None,
                    achieved_rate: None,
                },
            ],
        };
        ramp(&ramp_svg, "t", &[row]).unwrap();
        for p in [cdf, cpu, ramp_svg] {
            let s = std::fs::read_to_string(&p).unwrap();
            assert!(s.starts_with("<svg"), "{}", p.display());
            assert!(s.contains("kamailio"), "{}", p.display());
        }
    }
}
