//! The KMS 2016-01-20 actions: one function per action, from decoded parameters to the
//! documented JSON (reference/alibaba-protocol.md §2) or an [`ApiError`].
//!
//! `RequestId` is added by the server. To add an action, write its function and list it in
//! [`ACTIONS`].

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

use crate::clock::format_iso8601;
use crate::error::ApiError;
use crate::state::{
    b64, random_alnum, random_guid, unb64, Key, KeyMaterial, KeyRefForms, KeyState, KeyVersion,
    State, USAGE_ENCRYPT_DECRYPT, USAGE_SIGN_VERIFY,
};

/// The API version every action here belongs to.
pub const KMS_VERSION: &str = "2016-01-20";

/// What an action gets: the account, its parameters and the server's clock.
pub struct Ctx<'a> {
    pub state: &'a mut State,
    pub params: &'a BTreeMap<String, String>,
    pub now: SystemTime,
}

pub type ActionFn = fn(&mut Ctx<'_>) -> Result<Value, ApiError>;

/// Every implemented action.
pub const ACTIONS: &[(&str, ActionFn)] = &[
    ("CreateKey", create_key),
    ("CreateAlias", create_alias),
    ("DescribeKey", describe_key),
    ("ListKeyVersions", list_key_versions),
    ("CreateKeyVersion", create_key_version),
    ("DescribeKeyVersion", describe_key_version),
    ("GetPublicKey", get_public_key),
    ("AsymmetricSign", asymmetric_sign),
    ("AsymmetricVerify", asymmetric_verify),
    ("ListAliases", list_aliases),
    ("ScheduleKeyDeletion", schedule_key_deletion),
    ("CancelKeyDeletion", cancel_key_deletion),
    ("EnableKey", enable_key),
    ("DisableKey", disable_key),
];

pub fn find(action: &str) -> Option<ActionFn> {
    ACTIONS.iter().find(|(n, _)| *n == action).map(|(_, f)| *f)
}

pub(crate) const ALIAS_OR_ID: KeyRefForms = KeyRefForms {
    alias: true,
    arn: false,
};
const ALIAS_ID_OR_ARN: KeyRefForms = KeyRefForms {
    alias: true,
    arn: true,
};
const ID_ONLY: KeyRefForms = KeyRefForms {
    alias: false,
    arn: false,
};

impl Ctx<'_> {
    fn optional(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// A parameter that must be present and non-empty.
    fn required(&self, name: &str) -> Result<&str, ApiError> {
        match self.optional(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::missing_parameter(name)),
        }
    }

    /// An integer parameter within `range`, defaulting when absent.
    fn int(
        &self,
        name: &str,
        default: i64,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<i64, ApiError> {
        let Some(text) = self.optional(name) else {
            return Ok(default);
        };
        let n: i64 = text.parse().map_err(|_| {
            ApiError::invalid_parameter(name, format!("{text:?} is not an integer."))
        })?;
        if !range.contains(&n) {
            return Err(ApiError::invalid_parameter(
                name,
                format!("{n} is out of range {}..={}.", range.start(), range.end()),
            ));
        }
        Ok(n)
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.optional(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(ApiError::invalid_parameter(
                name,
                format!("{other:?} is not true or false."),
            )),
        }
    }

    /// `DryRun=true`: everything checked, nothing done (reference §2.12).
    fn dry_run(&self) -> Result<(), ApiError> {
        if self.bool("DryRun")? == Some(true) {
            // Status unconfirmed; 400 like other client-side refusals.
            return Err(ApiError::service(
                400,
                "DryRunOperationError",
                "The request would have succeeded, but DryRun is set.",
            ));
        }
        Ok(())
    }

    fn resolve(&self, forms: KeyRefForms) -> Result<String, ApiError> {
        let key_ref = self.required("KeyId")?;
        self.state.resolve_key(key_ref, forms)
    }
}

/// Paging parameters, validated: PageNumber ≥ 1, PageSize 1..=100 (default 10).
fn page(ctx: &Ctx<'_>) -> Result<(usize, usize), ApiError> {
    let number = ctx.int("PageNumber", 1, 1..=i64::from(i32::MAX))? as usize;
    let size = ctx.int("PageSize", 10, 1..=100)? as usize;
    Ok((number, size))
}

fn page_of<T: Clone>(items: &[T], number: usize, size: usize) -> Vec<T> {
    items
        .iter()
        .skip((number - 1).saturating_mul(size))
        .take(size)
        .cloned()
        .collect()
}

/// `KeyMetadata` with every documented field, all strings.
pub fn key_metadata(state: &State, key: &Key) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), Value::String(v));
    };
    put("KeyId", key.id.clone());
    put("Arn", state.key_arn(&key.id));
    put("CreationDate", format_iso8601(key.creation_date));
    put("KeyState", key.state.as_str().to_string());
    put("KeySpec", key.spec.clone());
    put("KeyUsage", key.usage.clone());
    put("ProtectionLevel", key.protection_level.clone());
    put("Origin", key.origin.clone());
    put("Creator", key.creator.clone());
    put("Description", key.description.clone());
    put("PrimaryKeyVersion", key.primary_version.clone());
    put(
        "DeleteDate",
        key.delete_date.map(format_iso8601).unwrap_or_default(),
    );
    put("MaterialExpireTime", String::new());
    put("AutomaticRotation", "Disabled".to_string());
    put("RotationInterval", String::new());
    put("NextRotationDate", String::new());
    put("LastRotationDate", String::new());
    put("DeletionProtection", "Disabled".to_string());
    put("DeletionProtectionDescription", String::new());
    if let Some(id) = &key.dkms_instance_id {
        put("DKMSInstanceId", id.clone());
    }
    Value::Object(m)
}

fn create_key(ctx: &mut Ctx<'_>) -> Result<Value, ApiError> {
    // KMS's default spec is Aliyun_AES_256, which KeyMaterial reports as not implemented.
    let spec = ctx
        .optional("KeySpec")
        .unwrap_or("Aliyun_AES_256")
        .to_string();
    // Parameters first, key generation (slow for RSA) last.
    KeyMaterial::check_spec(&spec)?;
    let usage = match ctx.optional("KeyUsage") {
        None => USAGE_SIGN_VERIFY,
        Some(USAGE_SIGN_VERIFY) => USAGE_SIGN_VERIFY,
        Some(USAGE_ENCRYPT_DECRYPT) if spec.starts_with("EC_P256") => {
            return Err(ApiError::invalid_parameter(
                "KeyUsage",
                format!("{spec} keys can only be used for SIGN/VERIFY."),
            ))
        }
        Some(USAGE_ENCRYPT_DECRYPT) => {
            // RSA and SM2 keys may encrypt in KMS; the emulator has no Encrypt/Decrypt.
            return Err(ApiError::invalid_parameter(
                "KeyUsage",
                format!("{spec} keys may be ENCRYPT/DECRYPT in KMS, but this emulator only implements SIGN/VERIFY keys."),
            ));
        }
        Some(other) => {
            return Err(ApiError::invalid_parameter(
                "KeyUsage",
                format!("{other:?} is not ENCRYPT/DECRYPT or SIGN/VERIFY."),
            ))
        }
    };
    let description = ctx.optional("Description").unwrap_or("").to_string();
    if description.chars().count() > 8192 {
        return Err(ApiError::invalid_parameter(
            "Description",
            "At most 8192 characters.",
        ));
    }
    let origin = match ctx.optional("Origin") {
        None | Some("Aliyun_KMS") => "Aliyun_KMS",
        Some("EXTERNAL") => {
            return Err(ApiError::service(
                400,
                "Unsupported.Origin",
                "EXTERNAL key material is only for symmetric keys.",
            ))
        }
        Some(other) => {
            return Err(ApiError::invalid_parameter(
                "Origin",
                format!("{other:?} is not Aliyun_KMS or EXTERNAL (case-sensitive)."),
            ))
        }
    };
    let protection_level = match ctx.optional("ProtectionLevel") {
        None | Some("") | Some("SOFTWARE") => "SOFTWARE",
        Some("HSM") => "HSM",
        Some(other) => {
            return Err(ApiError::invalid_parameter(
                "ProtectionLevel",
                format!("{other:?} is not SOFTWARE or HSM."),
            ))
        }
    };
    if ctx.bool("EnableAutomaticRotation")? == Some(true) {
        return Err(ApiError::unsupported_operation(
            "Automatic rotation applies to symmetric keys only.",
        ));
    }
    let dkms_instance_id = match ctx.optional("DKMSInstanceId") {
        None | Some("") => None,
        Some(id) if ctx.state.kms_instances.contains(id) => Some(id.to_string()),
        Some(id) => return Err(ApiError::dkms_instance_not_found(id)),
    };
    // RSA_4096 exists only for keys in a KMS instance (document 480161), and on a KMS 3.0
    // account every asymmetric key does. What the default key store answers is not
    // documented; this is the emulator's choice of code and message.
    if dkms_instance_id.is_none()
        && (ctx.state.kms3_key_stores
            || crate::state::INSTANCE_ONLY_KEY_SPECS.contains(&spec.as_str()))
    {
        return Err(ApiError::invalid_parameter(
            "KeySpec",
            format!("{spec} keys can only be created in a KMS instance (DKMSInstanceId)."),
        ));
    }
    // A key in a KMS instance takes the instance's protection (software instances here).
    let protection_level = if dkms_instance_id.is_some() {
        "SOFTWARE"
    } else {
        protection_level
    };

    let material = KeyMaterial::generate(&spec)?;
    let key_id = ctx.state.new_key_id();
    let version_id = random_guid();
    let key = Key {
        id: key_id.clone(),
        arn: ctx.state.key_arn(&key_id),
        spec,
        usage: usage.to_string(),
        description,
        protection_level: protection_level.to_string(),
        origin: origin.to_string(),
        creator: ctx.state.account_id.clone(),
        dkms_instance_id,
        creation_date: ctx.now,
        state: KeyState::Enabled,
        delete_date: None,
        primary_version: version_id.clone(),
        versions: vec![KeyVersion {
            id: version_id,
            creation_date: ctx.now,
            material,
        }],
    };
    let metadata = key_metadata(ctx.state, &key);
    ctx.state.keys.insert(key_id, key);
    Ok(json!({ "KeyMetadata": metadata }))
}

fn create_alias(ctx: &mut Ctx<'_>) -> Result<Value, ApiError> {
    let alias = ctx.required("AliasName")?.to_string();
    let name_len = alias.chars().count();
    let Some(name) = alias.strip_prefix("alias/") else {
        return Err(ApiError::invalid_parameter(
            "AliasName",
            "It must start with \"alias/\".",
        ));
    };
    if name.is_empty() || name_len > 255 {
        return Err(ApiError::invalid_parameter(
            "AliasName",
            "It must be 1 to 255 characters long including \"alias/\", with a name after the prefix.",
        ));
    }
    if alias.starts_with("alias/acs") {
        return Err(ApiError::invalid_parameter(
            "AliasName",
            "The prefix \"alias/acs\" is reserved for Alibaba Cloud.",
        ));
    }
    // CreateAlias takes the key id itself, not an alias (reference §2.2).
    let key_id = ctx.resolve(ID_ONLY)?;
    if ctx.state.key(&key_id).state == KeyState::PendingDeletion {
        return Err(ApiError::state_conflict(
            "Rejected.StateModifiedFailed",
            format!("The key {key_id} is pending deletion."),
        ));
    }
    if ctx.state.aliases.contains_key(&alias) {
        return Err(ApiError::alias_already_exists(&alias));
    }
    if ctx.state.aliases.len() >= ctx.state.max_aliases {
        return Err(ApiError::limit_exceeded(format!(
            "At most {} aliases per region.",
            ctx.state.max_aliases
        )));
    }
    ctx.state.aliases.insert(alias, key_id);
    Ok(json!({}))
}

fn describe_key(ctx: &mut Ctx<'_>) -> Result<Value, ApiError> {
    let key_id = ctx.resolve(ALIAS_ID_OR_ARN)?;
    Ok(json!({ "KeyMetadata": key_metadata(ctx.state, ctx.state.key(&key_id)) }))
}

fn list_key_versions(ctx: &mut Ctx<'_>) -> Result<Value, ApiError> {
    let key_id = ctx.resolve(ALIAS_ID_OR_ARN)?;
    let (number, size) = page(ctx)?;
    let key = ctx.state.key(&key_id);
    // KMS documents no order (reference §2.6); the emulator's is configurable, oldest first
    // by default.
    let items: Vec<Value> = key
        .versions_in(ctx.state.version_order, &ctx.state.shuffle_seed)
        .into_iter()
        .map(|v| version_json(key, v))
        .collect();
    Ok(json!({
        "PageNumber": number,
        "PageSize": size,
        "TotalCount": items.len(),
        "KeyVersions": { "KeyVersion": page_of(&items, number, size) },
    }))
}

/// `{"KeyId", "KeyVersionId", "CreationDate"}`, as in ListKeyVersions, CreateKeyVersion and
/// DescribeKeyVersion.
fn version_json(key: &Key, version: &KeyVersion) -> Value {
    json!({
        "KeyId": key.id,
        "KeyVersionId": version.id,
        "CreationDate": format_iso8601(version.creation_date),
    })
}

/// Minimum spacing of a key's versions (reference §2.7).
pub const KEY_VERSION_INTERVAL: Duration = Duration::from_secs(7 * 86400);
/// Most versions one key may have (reference §2.7).
pub const MAX_KEY_VERSIONS: usize = 50;

/// CreateKeyVersion (reference §2.7). KeyId: id or alias (not an ARN, which the parameter's
/// description does not list). The key must be Enabled (409 `Rejected.Disabled` /
/// `Rejected.PendingDeletion`, as the cryptographic calls) and asymmetric.
///
/// The rules KMS states without naming their error (asymmetric keys only, at least 7 days
/// after the key's newest version, at most 50 versions) all answer 400
/// `Rejected.UnsupportedOperation`, the one 400 code §2.7 lists besides `InvalidParameter`;
/// the message says which rule. The version id has the form of KMS's CreateKeyVersion demo,
/// `<key id>-<10 alphanumerics>` (CreateKey's first version is a GUID): clients must treat
/// version ids as opaque. `PrimaryKeyVersion` does not move (see
/// [`crate::state::Key::primary_version`]).
fn create_key_version(ctx: &mut Ctx<'_>) -> Result<Value, ApiError> {
    let key_id = ctx.resolve(ALIAS_OR_ID)?;
    let now = ctx.now;
    let key = ctx.state.key(&key_id);
    key.state.require_enabled(&key_id)?;
    let refuse = |detail: String| ApiError::service(400, "Rejected.UnsupportedOperation", detail);
    if !key.is_asymmetric() {
        return Err(refuse(format!(
            "Key versions can only be created for asymmetric keys; {key_id} is {}.",
            key.spec
        )));
    }
    if key.versions.len() >= MAX_KEY_VERSIONS {
        return Err(refuse(format!(
            "The key {key_id} already has the maximum of {MAX_KEY_VERSIONS} versions."
        )));
    }
    if let Some(newest) = key.newest_version() {
        let since = now.duration_since(newest.creation_date).unwrap_or_default();
        if since < KEY_VERSION_INTERVAL {
            return Err(refuse(format!(
                "The key {key_id} got version {} at {}; a new version may be created 7 days after the last one.",
                newest.id,
                format_iso8601(newest.creation_date)
            )));
        }
    }
    let material = KeyMaterial::generate(&key.spec)?;
    let version_id = format!("{key_id}-{}", random_alnum(10));
    let key = ctx.state.key_mut(&key_id);
    key.versions.push(KeyVersion {
        id: version_id,
        creation_date: now,
        material,
    });
    let key = ctx.state.key(&key_id);
    let version = key.versions.last().expect("just pushed");
    Ok(json!({ "KeyVersion": version_json(key, version) }))
}

/// DescribeKeyVersion (reference §2.8): KeyId id, alias or ARN; works in every key state. A
/// version of another key is 404 `Forbidden.KeyNotFound`, as in the cryptographic calls.
fn describe_key_version(ctx: &mut Ctx<'_>) -> Result<Value, ApiError> {
    let key_id = ctx.resolve(ALIAS_ID_OR_ARN)?;
    let version_id = ctx.required("KeyVersionId")?;
    let key = ctx.state.key(&key_id);
    let version = key.version(version_id).ok_or_else(|| {
        ApiError::key_not_found(format!(
            "Key version {version_id} does not belong to key {key_id}."
        ))
    })?;
    Ok(json!({ "KeyVersion": version_json(key, version) }))
}

/// Resolves KeyId + KeyVersionId for the data-plane actions and checks state and usage.
fn version_for_crypto(ctx: &Ctx<'_>) -> Result<(String, String), ApiError> {
    let key_id = ctx.resolve(ALIAS_OR_ID)?;
    let version_id = ctx.required("KeyVersionId")?.to_string();
    let key = ctx.state.key(&key_id);
    if key.version(&version_id).is_none() {
        // Status/code for a foreign version id unconfirmed; KMS reports missing resources
        // as Forbidden.*NotFound with 404.
        return Err(ApiError::key_not_found(format!(
            "Key version {version_id} does not belong to key {key_id}."
        )));
    }
    key.state.require_enabled(&key_id)?;
    Ok((key_id, version_id))
}

fn require_sign_usage(key: &Key) -> Result<(), ApiError> {
    if key.usage != USAGE_SIGN_VERIFY {
        return Err(ApiError::service(
            400,
            "Rejected.UnsupportedOperation",
            format!("The key {} is not a SIGN/VERIFY key.", key.id),
        ));
    }
    Ok(())
}

fn get_public_key(ctx: &mut Ctx<'_>) -> Result<Value, ApiError> {
    let (key_id, version_id) = version_for_crypto(ctx)?;
    ctx.dry_run()?;
    let key = ctx.state.key(&key_id);
    let pem = key
        .version(&version_id)
        .expect("checked")
        .material
        .public_key_pem();
    Ok(json!({ "KeyId": key_id, "KeyVersionId": version_id, "PublicKey": pem }))
}

fn asymmetric_sign(ctx: &mut Ctx<'_>) -> Result<Value, ApiError> {
    let (key_id, version_id) = version_for_crypto(ctx)?;
    let algorithm = ctx.required("Algorithm")?;
    let digest = unb64("Digest", ctx.required("Digest")?)?;
    let key = ctx.state.key(&key_id);
    require_sign_usage(key)?;
    let version = key.version(&version_id).expect("checked");
    // Validate before DryRun so a dry run reports real parameter errors.
    let signature = version.material.sign(algorithm, &digest)?;
    ctx.dry_run()?;
    Ok(json!({ "KeyId": key_id, "KeyVersionId": version_id, "Value": b64(&signature) }))
}

fn asymmetric_verify(ctx: &mut Ctx<'_>) -> Result<Value, ApiError> {
    let (key_id, version_id) = version_for_crypto(ctx)?;
    let algorithm = ctx.required("Algorithm")?;
    let digest = unb64("Digest", ctx.required("Digest")?)?;
    let signature = unb64("Value", ctx.required("Value")?)?;
    let key = ctx.state.key(&key_id);
    require_sign_usage(key)?;
    let version = key.version(&version_id).expect("checked");
    let valid = version.material.verify(algorithm, &digest, &signature)?;
    ctx.dry_run()?;
    Ok(json!({ "KeyId": key_id, "KeyVersionId": version_id, "Value": valid }))
}

fn list_aliases(ctx: &mut Ctx<'_>) -> Result<Value, ApiError> {
    let (number, size) = page(ctx)?;
    let items: Vec<Value> = ctx
        .state
        .aliases
        .iter()
        .map(|(alias, key_id)| {
            json!({
                "KeyId": key_id,
                "AliasName": alias,
                "AliasArn": ctx.state.alias_arn(alias),
            })
        })
        .collect();
    Ok(json!({
        "PageNumber": number,
        "PageSize": size,
        "TotalCount": items.len(),
        "Aliases": { "Alias": page_of(&items, number, size) },
    }))
}

fn schedule_key_deletion(ctx: &mut Ctx<'_>) -> Result<Value, ApiError> {
    let key_id = ctx.resolve(ALIAS_ID_OR_ARN)?;
    ctx.required("PendingWindowInDays")?;
    let days = ctx.int("PendingWindowInDays", 0, 7..=366)?;
    let now = ctx.now;
    let key = ctx.state.key_mut(&key_id);
    if key.state == KeyState::PendingDeletion {
        return Err(ApiError::state_conflict(
            "Rejected.PendingDeletion",
            format!("The key {key_id} is already pending deletion."),
        ));
    }
    key.state = KeyState::PendingDeletion;
    key.delete_date = Some(now + Duration::from_secs(days as u64 * 86400));
    Ok(json!({}))
}

fn cancel_key_deletion(ctx: &mut Ctx<'_>) -> Result<Value, ApiError> {
    let key_id = ctx.resolve(ALIAS_ID_OR_ARN)?;
    let key = ctx.state.key_mut(&key_id);
    if key.state != KeyState::PendingDeletion {
        return Err(ApiError::state_conflict(
            "Rejected.StateModifiedFailed",
            format!("The key {key_id} is not pending deletion."),
        ));
    }
    key.state = KeyState::Enabled;
    key.delete_date = None;
    Ok(json!({}))
}

fn set_enabled(ctx: &mut Ctx<'_>, enabled: bool) -> Result<Value, ApiError> {
    let key_id = ctx.resolve(ALIAS_ID_OR_ARN)?;
    let key = ctx.state.key_mut(&key_id);
    if key.state == KeyState::PendingDeletion {
        return Err(ApiError::state_conflict(
            "Rejected.PendingDeletion",
            format!("The key {key_id} is pending deletion."),
        ));
    }
    key.state = if enabled {
        KeyState::Enabled
    } else {
        KeyState::Disabled
    };
    Ok(json!({}))
}

fn enable_key(ctx: &mut Ctx<'_>) -> Result<Value, ApiError> {
    set_enabled(ctx, true)
}

fn disable_key(ctx: &mut Ctx<'_>) -> Result<Value, ApiError> {
    set_enabled(ctx, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::VersionOrder;

    fn state() -> State {
        let mut s = State::new("cn-hangzhou".into(), "1234567890123456".into());
        s.kms_instances.insert("kst-test".into());
        s
    }

    fn call(s: &mut State, action: &str, params: &[(&str, &str)]) -> Result<Value, ApiError> {
        let params: BTreeMap<String, String> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let f = find(action).expect("known action");
        f(&mut Ctx {
            state: s,
            params: &params,
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        })
    }

    fn new_key(s: &mut State) -> (String, String) {
        let v = call(
            s,
            "CreateKey",
            &[("KeySpec", "EC_P256"), ("KeyUsage", "SIGN/VERIFY")],
        )
        .unwrap();
        let m = &v["KeyMetadata"];
        (
            m["KeyId"].as_str().unwrap().to_string(),
            m["PrimaryKeyVersion"].as_str().unwrap().to_string(),
        )
    }

    #[test]
    fn create_key_validates_its_parameters() {
        let mut s = state();
        let code = |r: Result<Value, ApiError>| {
            let e = r.unwrap_err();
            (e.status, e.code)
        };
        assert_eq!(
            code(call(&mut s, "CreateKey", &[])),
            (400, "InvalidParameter".into())
        );
        assert_eq!(
            code(call(
                &mut s,
                "CreateKey",
                &[("KeySpec", "EC_P256"), ("KeyUsage", "ENCRYPT/DECRYPT")]
            )),
            (400, "InvalidParameter".into())
        );
        assert_eq!(
            code(call(
                &mut s,
                "CreateKey",
                &[("KeySpec", "EC_P256"), ("DKMSInstanceId", "kst-nope")]
            )),
            (403, "Forbidden.DKMSInstanceNotFound".into())
        );
        let v = call(
            &mut s,
            "CreateKey",
            &[("KeySpec", "EC_P256"), ("DKMSInstanceId", "kst-test")],
        )
        .unwrap();
        assert_eq!(v["KeyMetadata"]["DKMSInstanceId"], "kst-test");
        assert_eq!(v["KeyMetadata"]["KeyUsage"], "SIGN/VERIFY");
        assert!(s.kms_instances.contains("kst-test"));
        // KMS 3.0: the default key store takes no asymmetric key; the instance does.
        s.kms3_key_stores = true;
        assert_eq!(
            code(call(&mut s, "CreateKey", &[("KeySpec", "EC_P256")])),
            (400, "InvalidParameter".into())
        );
        call(
            &mut s,
            "CreateKey",
            &[("KeySpec", "EC_P256"), ("DKMSInstanceId", "kst-test")],
        )
        .unwrap();
    }

    #[test]
    fn aliases_follow_the_documented_rules() {
        let mut s = state();
        let (id, _) = new_key(&mut s);
        let err = |s: &mut State, alias: &str, key: &str| {
            call(s, "CreateAlias", &[("AliasName", alias), ("KeyId", key)])
                .unwrap_err()
                .code
        };
        assert_eq!(err(&mut s, "nope", &id), "InvalidParameter");
        assert_eq!(err(&mut s, "alias/", &id), "InvalidParameter");
        assert_eq!(err(&mut s, "alias/acsfoo", &id), "InvalidParameter");
        assert_eq!(
            err(&mut s, &format!("alias/{}", "a".repeat(250)), &id),
            "InvalidParameter"
        );
        call(
            &mut s,
            "CreateAlias",
            &[("AliasName", "alias/a"), ("KeyId", &id)],
        )
        .unwrap();
        assert_eq!(err(&mut s, "alias/a", &id), "AliasAlreadyExists");
        assert_eq!(err(&mut s, "alias/b", "alias/a"), "Forbidden.KeyNotFound");
        call(
            &mut s,
            "ScheduleKeyDeletion",
            &[("KeyId", &id), ("PendingWindowInDays", "7")],
        )
        .unwrap();
        let e = call(
            &mut s,
            "CreateAlias",
            &[("AliasName", "alias/c"), ("KeyId", &id)],
        )
        .unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (409, "Rejected.StateModifiedFailed")
        );
    }

    #[test]
    fn versions_list_oldest_first_and_page() {
        let mut s = state();
        let (id, first) = new_key(&mut s);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        let older = s.add_key_version(&id, t).unwrap();
        let newer = s
            .add_key_version(&id, t + Duration::from_secs(200_000_000))
            .unwrap();
        let v = call(&mut s, "ListKeyVersions", &[("KeyId", &id)]).unwrap();
        let ids: Vec<&str> = v["KeyVersions"]["KeyVersion"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["KeyVersionId"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [older.as_str(), first.as_str(), newer.as_str()]);
        assert_eq!(v["TotalCount"], 3);
        let p2 = call(
            &mut s,
            "ListKeyVersions",
            &[("KeyId", &id), ("PageSize", "2"), ("PageNumber", "2")],
        )
        .unwrap();
        assert_eq!(p2["KeyVersions"]["KeyVersion"].as_array().unwrap().len(), 1);
        assert_eq!(p2["PageNumber"], 2);
        for bad in [
            ("PageSize", "0"),
            ("PageSize", "101"),
            ("PageNumber", "0"),
            ("PageSize", "x"),
        ] {
            let e = call(&mut s, "ListKeyVersions", &[("KeyId", &id), bad]).unwrap_err();
            assert_eq!(e.code, "InvalidParameter", "{bad:?}");
        }
    }

    #[test]
    fn key_state_gates_signing() {
        let mut s = state();
        let (id, ver) = new_key(&mut s);
        let digest = b64(&[1u8; 32]);
        let sign = |s: &mut State| {
            call(
                s,
                "AsymmetricSign",
                &[
                    ("KeyId", &id),
                    ("KeyVersionId", &ver),
                    ("Algorithm", "ECDSA_SHA_256"),
                    ("Digest", &digest),
                ],
            )
        };
        sign(&mut s).unwrap();
        call(&mut s, "DisableKey", &[("KeyId", &id)]).unwrap();
        let e = sign(&mut s).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (409, "Rejected.Disabled"));
        call(&mut s, "EnableKey", &[("KeyId", &id)]).unwrap();
        call(
            &mut s,
            "ScheduleKeyDeletion",
            &[("KeyId", &id), ("PendingWindowInDays", "7")],
        )
        .unwrap();
        let e = sign(&mut s).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (409, "Rejected.PendingDeletion")
        );
        let d = call(&mut s, "DescribeKey", &[("KeyId", &id)]).unwrap();
        assert_eq!(d["KeyMetadata"]["KeyState"], "PendingDeletion");
        assert_eq!(d["KeyMetadata"]["DeleteDate"], "2023-11-21T22:13:20Z");
    }

    fn call_at(
        s: &mut State,
        now: SystemTime,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<Value, ApiError> {
        let params: BTreeMap<String, String> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        find(action).expect("known action")(&mut Ctx {
            state: s,
            params: &params,
            now,
        })
    }

    fn status_code(r: Result<Value, ApiError>) -> (u16, String) {
        let e = r.unwrap_err();
        (e.status, e.code)
    }

    const DAY: Duration = Duration::from_secs(86400);

    #[test]
    fn create_key_version_keeps_seven_days_between_versions() {
        let mut s = state();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (id, first) = new_key(&mut s);
        let refused = (400, "Rejected.UnsupportedOperation".to_string());

        let r = call_at(
            &mut s,
            t0 + 7 * DAY - Duration::from_secs(1),
            "CreateKeyVersion",
            &[("KeyId", &id)],
        );
        let e = r.unwrap_err();
        assert_eq!((e.status, e.code.clone()), refused);
        assert!(e.message.contains("7 days"), "{}", e.message);

        call(
            &mut s,
            "CreateAlias",
            &[("AliasName", "alias/k"), ("KeyId", &id)],
        )
        .unwrap();
        let v = call_at(
            &mut s,
            t0 + 7 * DAY,
            "CreateKeyVersion",
            &[("KeyId", "alias/k")],
        )
        .unwrap();
        let kv = &v["KeyVersion"];
        assert_eq!(kv["KeyId"], id.as_str());
        assert_eq!(kv["CreationDate"], "2023-11-21T22:13:20Z");
        let second = kv["KeyVersionId"].as_str().unwrap().to_string();
        let suffix = second.strip_prefix(&format!("{id}-")).unwrap();
        assert_eq!(suffix.len(), 10);
        assert_ne!(second, first);

        // The new version is the one the interval now counts from.
        assert_eq!(
            status_code(call_at(
                &mut s,
                t0 + 13 * DAY,
                "CreateKeyVersion",
                &[("KeyId", &id)]
            )),
            refused
        );
        call_at(&mut s, t0 + 14 * DAY, "CreateKeyVersion", &[("KeyId", &id)]).unwrap();
        // A seeded version dated in the future blocks it too.
        s.add_key_version(&id, t0 + 100 * DAY).unwrap();
        assert_eq!(
            status_code(call_at(
                &mut s,
                t0 + 30 * DAY,
                "CreateKeyVersion",
                &[("KeyId", &id)]
            )),
            refused
        );
        let v = call(&mut s, "DescribeKey", &[("KeyId", &id)]).unwrap();
        assert_eq!(v["KeyMetadata"]["PrimaryKeyVersion"], first.as_str());
        let v = call(&mut s, "ListKeyVersions", &[("KeyId", &id)]).unwrap();
        assert_eq!(v["TotalCount"], 4);

        // Only an id or alias names the key.
        let arn = s.key_arn(&id);
        assert_eq!(
            status_code(call_at(
                &mut s,
                t0 + 200 * DAY,
                "CreateKeyVersion",
                &[("KeyId", &arn)]
            )),
            (404, "Forbidden.KeyNotFound".to_string())
        );
        assert_eq!(
            status_code(call(&mut s, "CreateKeyVersion", &[])),
            (400, "MissingParameter".to_string())
        );
    }

    #[test]
    fn create_key_version_wants_an_enabled_key_under_fifty_versions() {
        let mut s = state();
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + 30 * DAY;
        let (id, _) = new_key(&mut s);
        call(&mut s, "DisableKey", &[("KeyId", &id)]).unwrap();
        assert_eq!(
            status_code(call_at(
                &mut s,
                later,
                "CreateKeyVersion",
                &[("KeyId", &id)]
            )),
            (409, "Rejected.Disabled".to_string())
        );
        call(&mut s, "EnableKey", &[("KeyId", &id)]).unwrap();
        call(
            &mut s,
            "ScheduleKeyDeletion",
            &[("KeyId", &id), ("PendingWindowInDays", "7")],
        )
        .unwrap();
        assert_eq!(
            status_code(call_at(
                &mut s,
                later,
                "CreateKeyVersion",
                &[("KeyId", &id)]
            )),
            (409, "Rejected.PendingDeletion".to_string())
        );
        call(&mut s, "CancelKeyDeletion", &[("KeyId", &id)]).unwrap();

        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        for _ in 1..MAX_KEY_VERSIONS - 1 {
            s.add_key_version(&id, old).unwrap();
        }
        // 49 versions: one more is allowed, the 51st is not.
        call_at(&mut s, later, "CreateKeyVersion", &[("KeyId", &id)]).unwrap();
        let e = call_at(
            &mut s,
            later + 30 * DAY,
            "CreateKeyVersion",
            &[("KeyId", &id)],
        )
        .unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (400, "Rejected.UnsupportedOperation")
        );
        assert!(e.message.contains("50 versions"), "{}", e.message);
        assert_eq!(s.key(&id).versions.len(), MAX_KEY_VERSIONS);
    }

    #[test]
    fn describe_key_version_answers_in_any_state() {
        let mut s = state();
        let (id, ver) = new_key(&mut s);
        let (other, other_ver) = new_key(&mut s);
        call(
            &mut s,
            "CreateAlias",
            &[("AliasName", "alias/d"), ("KeyId", &id)],
        )
        .unwrap();
        call(&mut s, "DisableKey", &[("KeyId", &id)]).unwrap();
        let arn = s.key_arn(&id);
        for key_ref in [id.as_str(), "alias/d", arn.as_str()] {
            let v = call(
                &mut s,
                "DescribeKeyVersion",
                &[("KeyId", key_ref), ("KeyVersionId", &ver)],
            )
            .unwrap();
            assert_eq!(
                v,
                json!({"KeyVersion": {"KeyId": id, "KeyVersionId": ver, "CreationDate": "2023-11-14T22:13:20Z"}})
            );
        }
        assert_eq!(
            status_code(call(
                &mut s,
                "DescribeKeyVersion",
                &[("KeyId", &id), ("KeyVersionId", &other_ver)]
            )),
            (404, "Forbidden.KeyNotFound".to_string())
        );
        assert_eq!(
            status_code(call(&mut s, "DescribeKeyVersion", &[("KeyId", &other)])),
            (400, "MissingParameter".to_string())
        );
    }

    #[test]
    fn list_key_versions_follows_the_configured_order() {
        let mut s = state();
        let (id, first) = new_key(&mut s);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        let mut ids = vec![first];
        for i in 1..8u32 {
            ids.push(s.add_key_version(&id, t + i * 100 * DAY).unwrap());
        }
        // Creation dates: first (2023) is the newest; the rest ascend from 2020.
        let oldest_first: Vec<String> = ids[1..].iter().chain(&ids[..1]).cloned().collect();
        let list = |s: &mut State| -> Vec<String> {
            let mut all = Vec::new();
            for page in ["1", "2", "3"] {
                let v = call(
                    s,
                    "ListKeyVersions",
                    &[("KeyId", &id), ("PageSize", "3"), ("PageNumber", page)],
                )
                .unwrap();
                all.extend(
                    v["KeyVersions"]["KeyVersion"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x["KeyVersionId"].as_str().unwrap().to_string()),
                );
            }
            all
        };
        assert_eq!(list(&mut s), oldest_first);
        s.version_order = VersionOrder::NewestFirst;
        let newest: Vec<String> = oldest_first.iter().rev().cloned().collect();
        assert_eq!(list(&mut s), newest);
        s.version_order = VersionOrder::Shuffled;
        let shuffled = list(&mut s);
        assert_eq!(
            list(&mut s),
            shuffled,
            "stable across calls, so pages add up"
        );
        let mut sorted = shuffled.clone();
        sorted.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(sorted, expected);
    }
}
