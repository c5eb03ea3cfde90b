//! The release metadata on the wire: `v1::ReleaseMetadata` is `wharf_core::ReleaseMetadata`
//! field for field, so the conversions are moves both ways and lose nothing.

use crate::v1;

/// `From` both ways between two structs with the same fields, moving each one. Both the pattern
/// and the struct expression are exhaustive, so a field added on either side and not listed
/// here fails to compile instead of being dropped silently on the wire.
macro_rules! field_for_field {
    (@one $from:path, $to:path, { $($field:ident),* }) => {
        impl From<$from> for $to {
            fn from(metadata: $from) -> $to {
                let $from { $($field),* } = metadata;
                $to { $($field),* }
            }
        }
    };
    ($a:path, $b:path, { $($field:ident),* $(,)? }) => {
        field_for_field!(@one $a, $b, { $($field),* });
        field_for_field!(@one $b, $a, { $($field),* });
    };
}

field_for_field!(wharf_core::ReleaseMetadata, v1::ReleaseMetadata, {
    metadata_version,
    name,
    version,
    summary,
    description,
    description_content_type,
    keywords,
    home_page,
    download_url,
    author,
    author_email,
    maintainer,
    maintainer_email,
    license,
    license_expression,
    license_file,
    classifiers,
    platform,
    supported_platform,
    requires_dist,
    provides_dist,
    obsoletes_dist,
    requires_external,
    requires,
    provides,
    obsoletes,
    provides_extra,
    dynamic,
    requires_python,
    project_urls,
    import_name,
    import_namespace,
});

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::option;
    use proptest::prelude::*;
    use prost::Message;
    use wharf_core::ReleaseMetadata;

    use crate::v1;

    /// Core metadata through the wire and back: the struct, then its encoded bytes.
    fn through_the_wire(metadata: &ReleaseMetadata) -> ReleaseMetadata {
        let wire = v1::ReleaseMetadata::from(metadata.clone());
        let bytes = wire.encode_to_vec();
        let decoded = v1::ReleaseMetadata::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(decoded, wire);
        ReleaseMetadata::from(decoded)
    }

    #[test]
    fn absent_and_empty_fields_stay_apart() {
        let metadata = ReleaseMetadata {
            name: Some("demo".to_owned()),
            summary: Some(String::new()),
            requires_dist: vec![String::new(), "b".to_owned(), "a".to_owned()],
            ..ReleaseMetadata::default()
        };
        let back = through_the_wire(&metadata);
        assert_eq!(back, metadata);
        assert_eq!(back.summary.as_deref(), Some(""));
        assert_eq!(back.description, None);
        assert_eq!(
            through_the_wire(&ReleaseMetadata::default()),
            ReleaseMetadata::default()
        );
    }

    fn single() -> impl Strategy<Value = Option<String>> {
        option::of("\\PC{0,12}")
    }

    fn multi() -> impl Strategy<Value = Vec<String>> {
        vec("\\PC{0,12}", 0..4)
    }

    prop_compose! {
        fn any_metadata()(
            (metadata_version, name, version, summary, description, description_content_type,
             keywords, home_page) in (single(), single(), single(), single(), single(), single(),
             single(), single()),
            (download_url, author, author_email, maintainer, maintainer_email, license,
             license_expression, requires_python) in (single(), single(), single(), single(),
             single(), single(), single(), single()),
            (license_file, classifiers, platform, supported_platform, requires_dist,
             provides_dist, obsoletes_dist, requires_external) in (multi(), multi(), multi(),
             multi(), multi(), multi(), multi(), multi()),
            (requires, provides, obsoletes, provides_extra, dynamic, project_urls, import_name,
             import_namespace) in (multi(), multi(), multi(), multi(), multi(), multi(), multi(),
             multi()),
        ) -> ReleaseMetadata {
            ReleaseMetadata {
                metadata_version, name, version, summary, description, description_content_type,
                keywords, home_page, download_url, author, author_email, maintainer,
                maintainer_email, license, license_expression, license_file, classifiers,
                platform, supported_platform, requires_dist, provides_dist, obsoletes_dist,
                requires_external, requires, provides, obsoletes, provides_extra, dynamic,
                requires_python, project_urls, import_name, import_namespace,
            }
        }
    }

    proptest! {
        #[test]
        fn any_metadata_survives_the_wire(metadata in any_metadata()) {
            prop_assert_eq!(through_the_wire(&metadata), metadata);
        }

        #[test]
        fn any_wire_metadata_survives_the_core_type(metadata in any_metadata()) {
            // The other direction: a wire message through the core type is the same message.
            let wire = v1::ReleaseMetadata::from(metadata);
            prop_assert_eq!(v1::ReleaseMetadata::from(ReleaseMetadata::from(wire.clone())), wire);
        }
    }
}
