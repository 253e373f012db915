//! What a release team types, with each line's flags: every cosign command the README shows
//! is one of these.

use super::{cosign, CosignBin, Registry, World};
use crate::harness::{create_key, emulator, env_for, openssl_verify, pem_of, unb64};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Each test runs for cosign 2.x and 3.x, each inside its own network namespace.
macro_rules! for_both_lines {
    ($($name:ident),* $(,)?) => {
        for_both_lines!(@line v2, 2, $($name),*);
        for_both_lines!(@line v3, 3, $($name),*);
    };
    (@line $module:ident, $line:literal, $($name:ident),*) => {
        mod $module {
            $(#[test]
            fn $name() {
                let test = concat!("cosign::suite::", stringify!($module), "::", stringify!($name));
                if super::super::run_here(test) {
                    super::$name(super::cosign($line));
                }
            })*
        }
    };
}

for_both_lines!(
    generate_key_pair_is_idempotent_and_public_key_matches,
    blob_signed_through_kms_verifies_through_kms_offline_and_with_openssl,
    image_sign_verify_attest_verify_attestation,
    rsa_keys_sign_blobs_and_images,
    generate_key_pair_makes_an_rsa_4096_key_when_told_and_it_signs_an_image,
    a_missing_alias_is_a_readable_error,
    an_image_signed_by_the_component_under_node_verifies,
    an_image_signed_by_the_aarch64_binary_under_qemu_verifies,
    an_image_signed_through_a_dedicated_gateway_verifies,
);

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `cosign generate-key-pair --kms KEY` in the working directory; returns cosign.pub.
fn generate(w: &World, key: &str) -> String {
    let pub_path = w.file("cosign.pub");
    let _ = std::fs::remove_file(&pub_path);
    w.ok(&["generate-key-pair", "--kms", key]);
    read(&pub_path)
}

/// Signs `file` with `key`; returns the file cosign wrote (2.x: the base64 signature;
/// 3.x: the bundle).
fn sign_blob(w: &World, key: &str, file: &str) -> String {
    let out = match w.cosign.line {
        2 => format!("{file}.sig"),
        _ => format!("{file}.sigstore.json"),
    };
    let mut args = vec!["sign-blob", "--key", key];
    args.extend(w.private_signing());
    match w.cosign.line {
        2 => args.extend(["--output-signature", &out]),
        _ => args.extend(["--bundle", &out]),
    }
    args.extend(["--yes", file]);
    w.ok(&args);
    out
}

/// `cosign sign` of `image` with `key`, in the private flow.
fn sign_image(w: &World, key: &str, image: &str) {
    let mut sign = vec!["sign", "--key", key];
    sign.extend(w.private_signing());
    sign.extend(["--yes", image]);
    w.ok(&sign);
}

/// `cosign verify --key V` of `image` (a `…@sha256:…` reference) passes for each of
/// `verifiers` (KMS key references or public-key files), naming the image's digest.
fn verify_image(w: &World, verifiers: &[&str], image: &str) {
    let digest = image.rsplit_once('@').unwrap().1;
    for verifier in verifiers {
        let out = w.ok(&["verify", "--key", verifier, "--insecure-ignore-tlog", image]);
        assert!(out.contains(digest), "{verifier}: {out}");
    }
}

/// `cosign verify-blob` of `file` against what [`sign_blob`] wrote, with a KMS key reference
/// or a public-key file.
fn verify_blob(w: &World, key: &str, signed: &str, file: &str) -> super::Outcome {
    let flag = match w.cosign.line {
        2 => "--signature",
        _ => "--bundle",
    };
    w.run(&[
        "verify-blob",
        "--key",
        key,
        flag,
        signed,
        "--insecure-ignore-tlog",
        file,
    ])
}

/// The raw signature bytes inside what [`sign_blob`] wrote.
fn signature_bytes(w: &World, signed: &str) -> Vec<u8> {
    let text = read(&w.file(signed));
    match w.cosign.line {
        2 => unb64(text.trim()),
        _ => {
            let bundle: serde_json::Value = serde_json::from_str(&text).unwrap();
            unb64(
                bundle["messageSignature"]["signature"]
                    .as_str()
                    .expect("a message signature in the bundle"),
            )
        }
    }
}

fn generate_key_pair_is_idempotent_and_public_key_matches(c: CosignBin) {
    let w = World::new(c, emulator());
    let key = w.key("cosign-key");
    let first = generate(&w, &key);
    assert!(first.starts_with("-----BEGIN PUBLIC KEY-----"), "{first}");
    // Again: the same key, not a second one.
    assert_eq!(generate(&w, &key), first);
    // One key in KMS: the second run found the alias and created nothing.
    let created = w.emu.stats().requests_per_action.get("CreateKey").copied();
    assert_eq!(created, Some(1), "CreateKey requests");
    assert_eq!(w.ok(&["public-key", "--key", &key]), first);
    w.finish();
}

fn blob_signed_through_kms_verifies_through_kms_offline_and_with_openssl(c: CosignBin) {
    let w = World::new(c, emulator());
    let key = w.key("cosign-key");
    let pem = generate(&w, &key);
    std::fs::write(w.file("release.tar.gz"), b"release artifact\n").unwrap();
    let signed = sign_blob(&w, &key, "release.tar.gz");

    for verifier in [key.as_str(), "cosign.pub"] {
        let v = verify_blob(&w, verifier, &signed, "release.tar.gz");
        assert!(
            v.ok && v.stderr.contains("Verified OK"),
            "{verifier}: {}",
            v.stderr
        );
    }
    // An independent verifier accepts the signature cosign stored.
    assert!(openssl_verify(
        &pem,
        b"release artifact\n",
        &signature_bytes(&w, &signed),
        "sha256"
    ));
    // A blob changed after signing is refused, through KMS and offline.
    std::fs::write(w.file("release.tar.gz"), b"release artifact, tampered\n").unwrap();
    for verifier in [key.as_str(), "cosign.pub"] {
        let v = verify_blob(&w, verifier, &signed, "release.tar.gz");
        assert!(!v.ok, "{verifier} accepted a tampered blob");
    }
    w.finish();
}

fn image_sign_verify_attest_verify_attestation(c: CosignBin) {
    let w = World::new(c, emulator());
    let registry = Registry::start(&w.dir);
    let image = registry.push_image("app", b"layer of the app image");
    let key = w.key("cosign-key");
    generate(&w, &key);

    sign_image(&w, &key, &image);
    verify_image(&w, &[&key, "cosign.pub"], &image);

    std::fs::write(
        w.file("predicate.json"),
        br#"{"builder":"ci","passed":true}"#,
    )
    .unwrap();
    let mut attest = vec!["attest", "--key", &key];
    attest.extend(w.private_signing());
    attest.extend([
        "--predicate",
        "predicate.json",
        "--type",
        "https://example.com/ci-result",
        "--yes",
        &image,
    ]);
    w.ok(&attest);
    for verifier in [key.as_str(), "cosign.pub"] {
        let out = w.ok(&[
            "verify-attestation",
            "--key",
            verifier,
            "--insecure-ignore-tlog",
            "--type",
            "https://example.com/ci-result",
            &image,
        ]);
        assert!(out.contains("payload"), "{verifier}: {out}");
    }
    // A key that did not sign: the image's signature is refused.
    let other = w.key("other-key");
    generate(&w, &other);
    let v = w.run(&[
        "verify",
        "--key",
        "cosign.pub",
        "--insecure-ignore-tlog",
        &image,
    ]);
    assert!(!v.ok, "an image verified with a key that did not sign it");
    w.finish();
}

fn rsa_keys_sign_blobs_and_images(c: CosignBin) {
    alibabakms_emulator::prewarm_rsa_keys("RSA_3072", 1);
    let w = World::new(c, emulator());
    let registry = Registry::start(&w.dir);
    let image = registry.push_image("rsa-app", b"layer of the rsa image");
    for spec in ["RSA_2048", "RSA_3072"] {
        let alias = spec.to_lowercase().replace('_', "-");
        let key = w.key(&alias);
        // cosign's generate-key-pair always asks for the default algorithm, so RSA keys are
        // made with the plugin's createKey, as `cosign` would send it.
        let created = create_key(
            &env_for(&w.emu),
            key.trim_start_matches("alibabakms://"),
            spec,
        );
        let pem = pem_of(created.ok("createKey"));
        let exported = w.ok(&["public-key", "--key", &key]);
        assert_eq!(exported, pem, "{spec}");
        let pub_file = format!("{alias}.pub");
        std::fs::write(w.file(&pub_file), &exported).unwrap();

        let blob = format!("{alias}.bin");
        std::fs::write(w.file(&blob), spec.as_bytes()).unwrap();
        let signed = sign_blob(&w, &key, &blob);
        let v = verify_blob(&w, &pub_file, &signed, &blob);
        assert!(v.ok, "{spec} verify-blob: {}", v.stderr);
        assert!(openssl_verify(
            &pem,
            spec.as_bytes(),
            &signature_bytes(&w, &signed),
            "sha256"
        ));

        sign_image(&w, &key, &image);
        verify_image(&w, &[&key, &pub_file], &image);
    }
    w.finish();
}

fn a_missing_alias_is_a_readable_error(c: CosignBin) {
    let w = World::new(c, emulator());
    let key = w.key("no-such-key");
    std::fs::write(w.file("release.tar.gz"), b"release artifact\n").unwrap();
    let mut args = vec!["sign-blob", "--key", &key];
    args.extend(w.private_signing());
    match w.cosign.line {
        2 => args.extend(["--output-signature", "out.sig"]),
        _ => args.extend(["--bundle", "out.json"]),
    }
    args.extend(["--yes", "release.tar.gz"]);
    for stderr in [w.fails(&args), w.fails(&["public-key", "--key", &key])] {
        // The plugin's own words reach the user: which alias, and what to do.
        assert!(
            stderr.contains("alias/no-such-key") && stderr.contains("generate-key-pair"),
            "{stderr}"
        );
        assert!(
            !stderr.contains("goroutine") && !stderr.contains("panic"),
            "{stderr}"
        );
    }
    assert!(!w.file("out.sig").exists() && !w.file("out.json").exists());
    w.finish();
}

fn generate_key_pair_makes_an_rsa_4096_key_when_told_and_it_signs_an_image(c: CosignBin) {
    alibabakms_emulator::prewarm_rsa_keys("RSA_4096", 1);
    let mut w = World::new(c, emulator());
    let registry = Registry::start(&w.dir);
    let image = registry.push_image("big-rsa", b"layer of the rsa-4096 image");
    // cosign asks the plugin for its default algorithm; the variable changes the answer.
    w.set_env("SIGSTORE_ALIBABAKMS_DEFAULT_ALGORITHM", "RSA_4096");
    let key = w.key_in_instance("rsa-4096");
    let pem = generate(&w, &key);
    let bits = Command::new("openssl")
        .args(["pkey", "-pubin", "-noout", "-text"])
        .stdin(std::fs::File::open(w.file("cosign.pub")).unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&bits.stdout);
    assert!(text.contains("4096 bit"), "{text}\n{pem}");
    sign_image(&w, &key, &image);
    verify_image(&w, &[&key, "cosign.pub"], &image);
    // A value the plugin does not know stops cosign with the plugin's words.
    w.set_env("SIGSTORE_ALIBABAKMS_DEFAULT_ALGORITHM", "RSA_1024");
    let stderr = w.fails(&["generate-key-pair", "--kms", &w.key_in_instance("nope")]);
    assert!(
        stderr.contains("SIGSTORE_ALIBABAKMS_DEFAULT_ALGORITHM") && stderr.contains("RSA_4096"),
        "{stderr}"
    );
    w.finish();
}

/// The plugin cosign runs is another runtime of the same component: generate-key-pair, sign
/// and verify an image, through it and offline with the public key it exported.
fn image_flow_through(w: World) {
    let registry = Registry::start(&w.dir);
    let image = registry.push_image("elsewhere", b"layer signed by another runtime");
    let key = w.key("other-runtime");
    generate(&w, &key);
    sign_image(&w, &key, &image);
    verify_image(&w, &[&key, "cosign.pub"], &image);
    assert_eq!(w.emu.stats().action("AsymmetricSign"), 1);
    w.finish();
}

/// `host/node/run.mjs` under Node.js, with the component jco transpiled (tests/e2e/node.rs).
fn an_image_signed_by_the_component_under_node_verifies(c: CosignBin) {
    let emu = emulator();
    let node = std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("node"))
                .find(|p| p.is_file())
        })
        .expect("node is on PATH (tests/tools/setup.sh checks)");
    let run_mjs: PathBuf = crate::node::runner().join("run.mjs");
    let ca = emu.ca_pem_path().display().to_string();
    let mut w = World::with_plugin(c, emu, &[&node, &run_mjs]);
    w.set_env("NODE_EXTRA_CA_CERTS", &ca);
    image_flow_through(w);
}

/// The aarch64 build under qemu-user (tests/e2e/cross.rs).
fn an_image_signed_by_the_aarch64_binary_under_qemu_verifies(c: CosignBin) {
    let [qemu, binary] = crate::cross::aarch64_plugin();
    image_flow_through(World::with_plugin(c, emulator(), &[&qemu, &binary]));
}

/// A key in a KMS instance, made through the shared gateway, signs an image through the
/// instance's dedicated gateway (tests/e2e/gateway.rs): no key management is sent there.
fn an_image_signed_through_a_dedicated_gateway_verifies(c: CosignBin) {
    let emu = emulator();
    let instance = alibabakms_emulator::DEFAULT_KMS_INSTANCE_ID;
    let gateway = emu.dedicated_gateway(instance);
    let name = gateway.rsplit_once(':').unwrap().0.to_string();
    let program = crate::harness::with_hosts(&[&name], &[crate::harness::BIN]);
    let program: Vec<&Path> = program.iter().map(Path::new).collect();
    let mut w = World::with_plugin(c, emu, &program);
    let allowed = format!("{},{gateway}", w.emu.endpoint());
    w.set_env("SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS", &allowed);
    w.set_env("NO_PROXY", &format!("127.0.0.1,localhost,{name}"));
    let shared = w.key_in_instance("gw");
    let created = generate(&w, &shared);
    let key_id = w.emu.alias_target("alias/gw").unwrap();
    let version = w.emu.key_versions(&key_id).unwrap().pop().unwrap();
    let key = format!("alibabakms://{gateway}/{instance}/{key_id}/versions/{version}");
    assert_eq!(w.ok(&["public-key", "--key", &key]), created);
    w.emu.reset_stats();
    let registry = Registry::start(&w.dir);
    let image = registry.push_image("gateway", b"layer signed through the gateway");
    sign_image(&w, &key, &image);
    verify_image(&w, &[&key, "cosign.pub"], &image);
    let stats = w.emu.stats();
    assert_eq!(stats.action("AsymmetricSign"), 1);
    assert_eq!(
        stats.action("DescribeKey") + stats.action("ListKeyVersions"),
        0
    );
    assert_eq!(stats.rejected("InvalidApi.NotFound"), 0);
    w.finish();
}
