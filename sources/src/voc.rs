//! PASCAL VOC annotation files, as ImageNet ships its validation boxes.

use types::BoxXyxy;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Annotation {
    #[serde(default, rename = "object")]
    objects: Vec<Object>,
}

#[derive(Debug, Deserialize)]
struct Object {
    name: String,
    bndbox: Bndbox,
}

#[derive(Debug, Deserialize)]
struct Bndbox {
    xmin: f64,
    ymin: f64,
    xmax: f64,
    ymax: f64,
}

/// The wnid and boxes of one annotation. ImageNet val has one class per image; a file naming
/// several classes is reported rather than guessed at.
pub fn parse(xml: &str) -> Result<(String, Vec<BoxXyxy>), String> {
    let ann: Annotation = quick_xml::de::from_str(xml).map_err(|e| format!("annotation does not parse: {e}"))?;
    let first = ann.objects.first().ok_or("annotation has no <object>")?;
    if let Some(other) = ann.objects.iter().find(|o| o.name != first.name) {
        return Err(format!("annotation names two classes, {} and {}", first.name, other.name));
    }
    // Coordinates are integers in ImageNet; a float one is truncated like the integer parse would.
    let boxes = ann
        .objects
        .iter()
        .map(|o| {
            let b = &o.bndbox;
            BoxXyxy::new(b.xmin as i32, b.ymin as i32, b.xmax as i32, b.ymax as i32)
        })
        .collect();
    Ok((first.name.clone(), boxes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_imagenet_annotation() {
        let xml = "<annotation><filename>x</filename><size><width>496</width><height>368</height></size>\
            <object><name>n01751748</name><bndbox><xmin>111</xmin><ymin>108</ymin><xmax>441</xmax><ymax>193</ymax></bndbox></object>\
            <object><name>n01751748</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax></bndbox></object></annotation>";
        let (wnid, boxes) = parse(xml).unwrap();
        assert_eq!(wnid, "n01751748");
        assert_eq!(boxes, vec![BoxXyxy::new(111, 108, 441, 193), BoxXyxy::new(1, 2, 3, 4)]);
    }

    #[test]
    fn broken_xml_is_an_error_not_a_panic() {
        assert!(parse("<annotation><object><name>n1</name>").is_err());
        assert!(parse("<annotation></annotation>").unwrap_err().contains("no <object>"));
    }
}
