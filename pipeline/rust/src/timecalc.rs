//! `TimeParser._second` for zones with a fixed offset (UTC, `+05:30`), done
//! natively: the epoch of a valid `YYYY-MM-DD HH:MM:SS` (all digits) in
//! that zone. Anything else -- other shapes, impossible dates, zones with
//! rules -- returns None and is left to the Python TimeParser, which also
//! writes the error message.

fn digits(b: &[u8]) -> Option<i64> {
    let mut n = 0i64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (c - b'0') as i64;
    }
    Some(n)
}

fn leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

/// Days from 1970-01-01 to the civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// (epoch seconds, ISO date and time) of `sec` (19 characters) in a zone
/// `offset` seconds east of UTC.
pub fn second_fixed(sec: &str, offset: i64) -> Option<(i64, String)> {
    let b = sec.as_bytes();
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (h, mi, s) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    const DAYS: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if y < 1 || !(1..=12).contains(&mo) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let dim = DAYS[(mo - 1) as usize] + i64::from(mo == 2 && leap(y));
    if d < 1 || d > dim {
        return None;
    }
    let epoch = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset;
    Some((epoch, format!("{}T{}", &sec[..10], &sec[11..19])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(second_fixed("1970-01-01 00:00:00", 0), Some((0, "1970-01-01T00:00:00".into())));
        assert_eq!(second_fixed("2000-02-29 12:00:00", 3600).unwrap().0, 951_822_000);
        assert_eq!(second_fixed("0001-01-01 00:00:00", 0).unwrap().0, -62_135_596_800);
        assert_eq!(second_fixed("1900-02-29 00:00:00", 0), None);
        assert_eq!(second_fixed("2017-13-01 00:00:00", 0), None);
    }
}
