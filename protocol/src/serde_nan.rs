//! Numbers that may be NaN or infinite (an exploding state, an undefined ratio): serde_json
//! writes them as `null`, so readers take `null` back as NaN.
use serde::{Deserialize, Deserializer};

pub fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

pub fn vec_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let v = Vec::<Option<f64>>::deserialize(d)?;
    Ok(v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
}

pub fn vecs_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<f64>>, D::Error> {
    let v = Vec::<Vec<Option<f64>>>::deserialize(d)?;
    Ok(v.into_iter().map(|r| r.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect()).collect())
}

/// Counts written as integers or as floats with an integral value (`3` or `3.0`); `null` as 0.
pub fn counts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<i64>>, D::Error> {
    let v = Vec::<Vec<Option<f64>>>::deserialize(d)?;
    Ok(v.into_iter().map(|r| r.into_iter().map(|x| x.map_or(0, |c| c.round() as i64)).collect()).collect())
}
