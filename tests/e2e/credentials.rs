//! Credential sources beyond the environment: the Aliyun CLI profile and the credentials
//! file, found where the official tools look, in the official order, and shared with the
//! sandbox read-only (each file's own directory, never the home directory).

use crate::harness::*;
use alibabakms_emulator::{Emulator, EmulatorConfig};
use std::path::{Path, PathBuf};

fn emulator_with_file_keys() -> Emulator {
    Emulator::start(
        EmulatorConfig::default()
            .no_credentials()
            .access_key(AK_ID, AK_SECRET)
            .access_key(CLI_ID, CLI_SECRET)
            .access_key(INI_ID, INI_SECRET),
    )
    .unwrap()
}

/// A fresh home directory for one test.
fn home() -> PathBuf {
    let mut b = [0u8; 6];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut b).unwrap();
    let dir = std::env::temp_dir().join(format!("kms-e2e-home-{}", hex::encode(b)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn cli_config(mode: &str, id: &str, secret: &str) -> String {
    format!(
        r#"{{"current":"default","profiles":[{{"name":"default","mode":"{mode}","access_key_id":"{id}","access_key_secret":"{secret}","region_id":"cn-hangzhou"}}],"meta_path":""}}"#
    )
}

fn ini(id: &str, secret: &str) -> String {
    format!("[default]\ntype = access_key\naccess_key_id = {id}\naccess_key_secret = {secret}\n")
}

/// The plugin's environment without any key variable: only HOME and the emulator's trust.
fn env_without_keys(emu: &Emulator, home: &Path) -> Vec<(String, String)> {
    let mut env = env_for(emu);
    env.retain(|(k, _)| !k.starts_with("ALIBABA_CLOUD_ACCESS_KEY"));
    env.push(("HOME".into(), home.display().to_string()));
    env
}

/// Which AccessKey signed the last request the emulator saw.
fn last_credential(emu: &Emulator) -> String {
    let r = emu.requests().pop().expect("a request");
    let auth = r
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .unwrap()
        .1
        .clone();
    auth.split("Credential=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn the_aliyun_cli_profile_in_home_signs() {
    let emu = emulator_with_file_keys();
    let home = home();
    write(
        &home.join(".aliyun/config.json"),
        &cli_config("AK", CLI_ID, CLI_SECRET),
    );
    let env = env_without_keys(&emu, &home);
    let key = format!("{}//alias/cli", emu.endpoint());
    let pem = pem_of(create_key(&env, &key, "EC_P256").ok("createKey"));
    let sig = signature_of(&sign_message(&env, &key, b"from the CLI profile"));
    assert_eq!(last_credential(&emu), CLI_ID);
    assert!(openssl_verify(
        &pem,
        b"from the CLI profile",
        &sig,
        "sha256"
    ));
}

#[test]
fn the_credentials_file_in_home_signs() {
    let emu = emulator_with_file_keys();
    let home = home();
    write(
        &home.join(".alibabacloud/credentials"),
        &ini(INI_ID, INI_SECRET),
    );
    let env = env_without_keys(&emu, &home);
    let key = format!("{}//alias/ini", emu.endpoint());
    create_key(&env, &key, "EC_P256").ok("createKey");
    sign_message(&env, &key, b"m").ok("signMessage");
    assert_eq!(last_credential(&emu), INI_ID);
}

#[test]
fn files_named_by_variables_are_read_wherever_they_are() {
    let emu = emulator_with_file_keys();
    let dir = home();
    let cli = dir.join("elsewhere/aliyun.json");
    write(&cli, &cli_config("AK", CLI_ID, CLI_SECRET));
    let mut env = env_without_keys(&emu, &home());
    env.push((
        "ALIBABA_CLOUD_CONFIG_FILE".into(),
        cli.display().to_string(),
    ));
    let key = format!("{}//alias/var", emu.endpoint());
    create_key(&env, &key, "EC_P256").ok("createKey");
    assert_eq!(last_credential(&emu), CLI_ID);

    // A named file that does not exist is an error naming the variable and the path.
    let mut env = env_without_keys(&emu, &home());
    env.push((
        "ALIBABA_CLOUD_CONFIG_FILE".into(),
        "/nonexistent/aliyun.json".into(),
    ));
    let e = public_key(&env, &key);
    assert!(
        e.err()
            .contains("ALIBABA_CLOUD_CONFIG_FILE=/nonexistent/aliyun.json"),
        "{}",
        e.err()
    );
}

/// Each adjacent pair of sources: the earlier one wins.
#[test]
fn sources_take_precedence_in_the_official_order() {
    let emu = emulator_with_file_keys();
    let home = home();
    write(
        &home.join(".aliyun/config.json"),
        &cli_config("AK", CLI_ID, CLI_SECRET),
    );
    write(
        &home.join(".alibabacloud/credentials"),
        &ini(INI_ID, INI_SECRET),
    );
    let key = format!("{}//alias/order", emu.endpoint());
    // environment before the CLI profile
    let env = env_for(&emu)
        .into_iter()
        .chain([("HOME".into(), home.display().to_string())])
        .collect::<Vec<_>>();
    create_key(&env, &key, "EC_P256").ok("createKey");
    assert_eq!(last_credential(&emu), AK_ID);
    // the CLI profile before the credentials file
    let env = env_without_keys(&emu, &home);
    public_key(&env, &key).ok("publicKey");
    assert_eq!(last_credential(&emu), CLI_ID);
    // ... unless it is disabled
    let mut env = env_without_keys(&emu, &home);
    env.push(("ALIBABA_CLOUD_CLI_PROFILE_DISABLED".into(), "true".into()));
    public_key(&env, &key).ok("publicKey");
    assert_eq!(last_credential(&emu), INI_ID);
}

#[test]
fn an_unsupported_profile_mode_is_named_and_nothing_is_sent() {
    let emu = emulator_with_file_keys();
    let home = home();
    write(
        &home.join(".aliyun/config.json"),
        &cli_config("BearerToken", "", ""),
    );
    let e = public_key(
        &env_without_keys(&emu, &home),
        &format!("{}//alias/x", emu.endpoint()),
    );
    assert!(
        e.err()
            .contains("uses mode \"BearerToken\", which this plugin does not support yet"),
        "{}",
        e.err()
    );
    assert_eq!(emu.stats().total_requests, 0);
}

#[test]
fn the_sandbox_shares_only_the_credential_directories() {
    let home = home();
    write(
        &home.join(".aliyun/config.json"),
        &cli_config("AK", CLI_ID, CLI_SECRET),
    );
    write(&home.join(".ssh/id_ed25519"), "not for the plugin");
    let out = std::process::Command::new(BIN)
        .arg("--print-sandbox")
        .env_clear()
        .env("HOME", &home)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let aliyun = std::fs::canonicalize(home.join(".aliyun/config.json")).unwrap();
    assert!(text.contains(&aliyun.display().to_string()), "{text}");
    assert!(!text.contains(".ssh"), "{text}");
    assert!(!text.contains(CLI_SECRET), "{text}");
}
