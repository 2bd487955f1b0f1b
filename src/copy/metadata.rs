//! The object metadata ferry carries over: the headers a browser or player
//! relies on, and the user's own `x-amz-meta-*`. It must not invent or drop any.

use std::collections::HashMap;

use aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_smithy_types::date_time::{DateTime, Format};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    /// Kept as the raw header: a malformed date is still the user's date.
    pub expires: Option<String>,
    pub user: HashMap<String, String>,
    /// The object's tags as `x-amz-tagging` (`k=v&k2=v2`), read separately.
    pub tags: Option<String>,
}

macro_rules! metadata_from {
    ($output:expr) => {{
        let o = $output;
        Metadata {
            content_type: o.content_type().map(str::to_owned),
            content_encoding: o.content_encoding().map(str::to_owned),
            content_disposition: o.content_disposition().map(str::to_owned),
            content_language: o.content_language().map(str::to_owned),
            cache_control: o.cache_control().map(str::to_owned),
            expires: o.expires_string().map(str::to_owned),
            user: o.metadata().cloned().unwrap_or_default(),
            tags: None,
        }
    }};
}

macro_rules! metadata_onto {
    ($meta:expr, $request:expr) => {{
        let m = $meta;
        let mut r = $request
            .set_content_type(m.content_type.clone())
            .set_content_encoding(m.content_encoding.clone())
            .set_content_disposition(m.content_disposition.clone())
            .set_content_language(m.content_language.clone())
            .set_cache_control(m.cache_control.clone())
            .set_metadata(Some(m.user.clone()).filter(|u| !u.is_empty()))
            .set_tagging(m.tags.clone());
        if let Some(expires) = m.expires_date() {
            r = r.expires(expires);
        }
        r
    }};
}

impl Metadata {
    pub fn from_get(o: &GetObjectOutput) -> Metadata {
        metadata_from!(o)
    }

    pub fn from_head(o: &HeadObjectOutput) -> Metadata {
        metadata_from!(o)
    }

    pub fn onto_put(&self, r: PutObjectFluentBuilder) -> PutObjectFluentBuilder {
        metadata_onto!(self, r)
    }

    pub fn onto_create(
        &self,
        r: CreateMultipartUploadFluentBuilder,
    ) -> CreateMultipartUploadFluentBuilder {
        metadata_onto!(self, r)
    }

    fn expires_date(&self) -> Option<DateTime> {
        let raw = self.expires.as_deref()?;
        match DateTime::from_str(raw, Format::HttpDate) {
            Ok(d) => Some(d),
            Err(_) => {
                tracing::warn!(
                    expires = raw,
                    "source Expires header is not an HTTP date; not copied"
                );
                None
            }
        }
    }
}
