<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Unit\Verify;

use Autoheal\Sdk\Journal\CommandRecord;
use Autoheal\Sdk\Journal\FileJournal;
use Autoheal\Sdk\Journal\Journal;
use Autoheal\Sdk\Tests\Support\Fixtures;
use Autoheal\Sdk\Tests\Support\TempDir;
use Autoheal\Sdk\Time\FixedClock;
use Autoheal\Sdk\Verify\CommandVerifier;
use Autoheal\Sdk\Verify\Dsse;
use Autoheal\Sdk\Verify\Reason;
use Autoheal\Sdk\Verify\TrustedRoots;
use Autoheal\Sdk\Verify\Verdict;
use PHPUnit\Framework\TestCase;

/** Every check of sdk/PROTOCOL.md, each made to fail alone, and the acceptances around them. */
final class CommandVerifierTest extends TestCase
{
    private Fixtures $f;
    private string $dir;
    private Journal $journal;

    protected function setUp(): void
    {
        $this->f = new Fixtures();
        $this->dir = TempDir::create('verifier');
        $this->journal = new FileJournal($this->dir);
    }

    protected function tearDown(): void
    {
        TempDir::remove($this->dir);
    }

    /**
     * @param array<string, mixed>|string $item
     * @param list<string>|null $roots base64 roots (default: the fixture's)
     */
    private function verify($item, ?string $bundle, string $now = Fixtures::NOW, ?array $roots = null, ?string $install = Fixtures::INSTALL_ID): Verdict
    {
        $verifier = new CommandVerifier(TrustedRoots::fromBase64($roots ?? [$this->f->rootBase64()]), $this->journal, FixedClock::at($now));
        return $verifier->verify(is_string($item) ? $item : Fixtures::json($item), $bundle, $install);
    }

    /** @param array<string, mixed> $payload */
    private function standard(array $payload = [], array $manifest = []): array
    {
        $bundle = $this->f->bundle($manifest);
        $p = $this->f->payload($bundle, $payload);
        return [$this->f->item($p), $bundle, $p];
    }

    private function assertRefused(string $reason, Verdict $v): void
    {
        self::assertFalse($v->isAccepted(), 'accepted, expected ' . $reason);
        self::assertSame($reason, $v->reason(), $v->message());
        self::assertSame(['verdict' => 'refuse', 'reason' => $reason], $v->toArray());
    }

    public function testAValidCommandIsAccepted(): void
    {
        [$item, $bundle, $p] = $this->standard();
        $v = $this->verify($item, $bundle);
        self::assertTrue($v->isAccepted(), $v->message());
        self::assertSame(['verdict' => 'accept', 'reason' => 'ok'], $v->toArray());
        self::assertSame($p['id'], $v->command()->id());
        self::assertSame('add_missing_column', $v->manifest()->name());
        self::assertCount(1, $v->operations());
        self::assertSame('DECIMAL(10,2)', $v->operations()[0]->columnType());
        self::assertFalse($v->isRedelivery());
    }

    public function testOnlyTheSignedPayloadCounts(): void
    {
        [$item, $bundle] = $this->standard();
        $item['command_payload'] = ['patch' => ['operations' => [['op' => 'drop_column', 'table' => 'wp_users', 'column' => 'user_pass']]]];
        $item['sequence'] = 999;
        $item['install_id'] = 'someone-else';
        $v = $this->verify($item, $bundle);
        self::assertTrue($v->isAccepted());
        self::assertSame('add_column', $v->operations()[0]->kind());
    }

    // --- 1. shape --------------------------------------------------------------------------

    /** @return array<string, array{callable(array<string, mixed>): mixed}> */
    public function malformedItems(): array
    {
        return [
            'not JSON' => [static fn (array $i) => '{"signed":'],
            'not an object' => [static fn (array $i) => '[1,2]'],
            'no signed envelope' => [static function (array $i) { unset($i['signed']); return $i; }],
            'no certificate' => [static function (array $i) { unset($i['certificate']); return $i; }],
            'signed is a string' => [static function (array $i) { $i['signed'] = 'x'; return $i; }],
            'wrong payloadType' => [static function (array $i) { $i['signed']['payloadType'] = 'application/json'; return $i; }],
            'certificate of the command type' => [static function (array $i) { $i['certificate']['payloadType'] = Dsse::COMMAND_TYPE; return $i; }],
            'payload not a string' => [static function (array $i) { $i['signed']['payload'] = 12; return $i; }],
            'signatures not a list' => [static function (array $i) { $i['signed']['signatures'] = 'x'; return $i; }],
            'signature without sig' => [static function (array $i) { unset($i['signed']['signatures'][0]['sig']); return $i; }],
            'keyid not a string' => [static function (array $i) { $i['signed']['signatures'][0]['keyid'] = 7; return $i; }],
            'unknown envelope field' => [static function (array $i) { $i['signed']['extra'] = 1; return $i; }],
        ];
    }

    /** @dataProvider malformedItems */
    public function testMalformedItemsAreRefused(callable $mutate): void
    {
        [$item, $bundle] = $this->standard();
        $this->assertRefused(Reason::MALFORMED, $this->verify($mutate($item), $bundle));
    }

    // --- 2. base64 --------------------------------------------------------------------------

    /** @return array<string, array{callable(array<string, mixed>): array<string, mixed>}> */
    public function nonCanonicalItems(): array
    {
        return [
            'payload with a newline' => [static function (array $i) { $i['signed']['payload'] = chunk_split($i['signed']['payload'], 40, "\n"); return $i; }],
            'payload with its padding changed' => [static function (array $i) {
                $p = $i['signed']['payload'];
                $i['signed']['payload'] = substr($p, -1) === '=' ? rtrim($p, '=') : $p . '=';
                return $i;
            }],
            'signature with trailing bits' => [static function (array $i) {
                $s = $i['signed']['signatures'][0]['sig'];   // 64 bytes: "…==" ; bump the last data char
                $alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
                $c = $s[strlen($s) - 3];
                $s[strlen($s) - 3] = $alphabet[(strpos($alphabet, $c) | 1)];
                $i['signed']['signatures'][0]['sig'] = $s;
                return $i;
            }],
            'certificate payload url-safe' => [static function (array $i) { $i['certificate']['payload'] = strtr($i['certificate']['payload'], '+/', '-_') . ' '; return $i; }],
            'certificate signature with a space' => [static function (array $i) { $i['certificate']['signatures'][0]['sig'] = ' ' . $i['certificate']['signatures'][0]['sig']; return $i; }],
        ];
    }

    /** @dataProvider nonCanonicalItems */
    public function testNonCanonicalBase64IsRefused(callable $mutate): void
    {
        [$item, $bundle] = $this->standard();
        $this->assertRefused(Reason::NON_CANONICAL_BASE64, $this->verify($mutate($item), $bundle));
    }

    public function testShapeIsCheckedBeforeBase64(): void
    {
        [$item, $bundle] = $this->standard();
        $item['signed']['payload'] .= ' ';
        $item['certificate']['payloadType'] = 'x';
        $this->assertRefused(Reason::MALFORMED, $this->verify($item, $bundle));
    }

    // --- 3–6. the certificate ---------------------------------------------------------------

    public function testCertificateByAnUntrustedKey(): void
    {
        $bundle = $this->f->bundle();
        $item = $this->f->item($this->f->payload($bundle), null, $this->f->certificate([], [Fixtures::keyPair()]));
        $this->assertRefused(Reason::CERTIFICATE_UNKNOWN_KEY, $this->verify($item, $bundle));
    }

    public function testCertificateWithNoSignature(): void
    {
        $bundle = $this->f->bundle();
        $item = $this->f->item($this->f->payload($bundle), null, $this->f->certificate([], []));
        $this->assertRefused(Reason::CERTIFICATE_UNKNOWN_KEY, $this->verify($item, $bundle));
    }

    public function testCertificateWhosePayloadWasChanged(): void
    {
        [$item, $bundle] = $this->standard();
        $other = Fixtures::keyPair();
        $forged = $this->f->certificatePayload(['public_key' => base64_encode($other['public']), 'key_id' => substr(hash('sha256', $other['public']), 0, 16)]);
        $item['certificate']['payload'] = base64_encode(Fixtures::canonicalJson($forged));
        $this->assertRefused(Reason::CERTIFICATE_SIGNATURE_INVALID, $this->verify($item, $bundle));
    }

    public function testABadSignatureByATrustedRootIsNeverSkipped(): void
    {
        $bundle = $this->f->bundle();
        $cert = $this->f->certificate();
        $bad = $cert['signatures'][0];
        $bad['sig'] = base64_encode(str_repeat("\1", 64));
        $cert['signatures'][] = $bad;   // a good one and a bad one by the same root
        $this->assertRefused(Reason::CERTIFICATE_SIGNATURE_INVALID, $this->verify($this->f->item($this->f->payload($bundle), null, $cert), $bundle));
    }

    public function testAShortSignatureIsInvalidNotAnError(): void
    {
        [$item, $bundle] = $this->standard();
        $item['certificate']['signatures'][0]['sig'] = base64_encode(str_repeat("\1", 63));
        $this->assertRefused(Reason::CERTIFICATE_SIGNATURE_INVALID, $this->verify($item, $bundle));
    }

    /** @return array<string, array{array<string, mixed>}> */
    public function invalidCertificates(): array
    {
        return [
            'format 2' => [['certificate_format' => 2]],
            'format as a string' => [['certificate_format' => '1']],
            'role root' => [['role' => 'root']],
            'key id of another key' => [['key_id' => '0000000000000000']],
            'public key of 31 bytes' => [['public_key' => base64_encode(str_repeat('a', 31))]],
            'not_after not RFC 3339' => [['not_after' => '2027-01-01 10:00:00']],
            'local offset' => [['not_after' => '2027-01-01T10:00:00+01:00']],
            'unknown field' => [['scope' => 'all']],
        ];
    }

    /**
     * @dataProvider invalidCertificates
     * @param array<string, mixed> $overrides
     */
    public function testInvalidCertificates(array $overrides): void
    {
        $bundle = $this->f->bundle();
        $item = $this->f->item($this->f->payload($bundle), null, $this->f->certificate($overrides));
        $this->assertRefused(Reason::CERTIFICATE_INVALID, $this->verify($item, $bundle));
    }

    public function testCertificatePayloadThatIsNotJson(): void
    {
        $bundle = $this->f->bundle();
        $cert = Fixtures::envelope(Dsse::CERTIFICATE_TYPE, 'not json', [$this->f->root]);
        $this->assertRefused(Reason::CERTIFICATE_INVALID, $this->verify($this->f->item($this->f->payload($bundle), null, $cert), $bundle));
    }

    public function testCertificatePublicKeyInsideTheSignedPayloadIsJudgedAsTheCertificate(): void
    {
        // As the reference verifier: inside the authentic payload, a bad key makes a bad
        // certificate (non_canonical_base64 is for the envelopes' own fields).
        $bundle = $this->f->bundle();
        $cert = $this->f->certificate(['public_key' => rtrim(base64_encode($this->f->commandKey['public']), '=')]);
        $this->assertRefused(Reason::CERTIFICATE_INVALID, $this->verify($this->f->item($this->f->payload($bundle), null, $cert), $bundle));
        $empty = $this->f->certificate(['not_before' => '2026-12-02T10:00:00Z', 'not_after' => '2026-12-02T10:00:00Z']);
        $this->assertRefused(Reason::CERTIFICATE_INVALID, $this->verify($this->f->item($this->f->payload($bundle), null, $empty), $bundle, '2026-12-02T10:00:00Z'));
    }

    public function testCertificateValidityWindow(): void
    {
        [$item, $bundle] = $this->standard();
        $this->assertRefused(Reason::CERTIFICATE_NOT_YET_VALID, $this->verify($item, $bundle, '2026-12-02T09:59:59Z'));
        $this->assertRefused(Reason::CERTIFICATE_EXPIRED, $this->verify($item, $bundle, '2027-01-01T10:00:00Z'));
        $edge = $this->standard(['expires_at' => '2027-01-02T00:00:00Z']);
        self::assertTrue($this->verify($edge[0], $edge[1], '2026-12-02T10:00:00Z')->isAccepted(), 'not_before itself is valid');
    }

    // --- 7–9. the command -------------------------------------------------------------------

    public function testCommandSignedByAnUncertifiedKey(): void
    {
        $bundle = $this->f->bundle();
        $this->assertRefused(Reason::UNKNOWN_KEY, $this->verify($this->f->item($this->f->payload($bundle), [Fixtures::keyPair()]), $bundle));
    }

    public function testCommandSignedByTheRootItselfIsNotACommandKey(): void
    {
        $bundle = $this->f->bundle();
        $this->assertRefused(Reason::UNKNOWN_KEY, $this->verify($this->f->item($this->f->payload($bundle), [$this->f->root]), $bundle));
    }

    public function testSignaturesByOtherKeysAreSkipped(): void
    {
        $bundle = $this->f->bundle();
        $v = $this->verify($this->f->item($this->f->payload($bundle), [Fixtures::keyPair(), $this->f->commandKey]), $bundle);
        self::assertTrue($v->isAccepted(), $v->message());
    }

    public function testTamperedOperationIsRefused(): void
    {
        [$item, $bundle] = $this->standard();
        $payload = (string) base64_decode($item['signed']['payload'], true);
        $item['signed']['payload'] = base64_encode(str_replace('DECIMAL(10,2)', 'DECIMAL(12,2)', $payload));
        $this->assertRefused(Reason::SIGNATURE_INVALID, $this->verify($item, $bundle));
    }

    public function testACertificateCannotPassForACommand(): void
    {
        // The command key signs a payload labelled as a certificate: PAE binds the type.
        [$item, $bundle] = $this->standard();
        $payload = (string) base64_decode($item['signed']['payload'], true);
        $sig = sodium_crypto_sign_detached(Dsse::pae(Dsse::CERTIFICATE_TYPE, $payload), $this->f->commandKey['secret']);
        $item['signed']['signatures'][0]['sig'] = base64_encode($sig);
        $this->assertRefused(Reason::SIGNATURE_INVALID, $this->verify($item, $bundle));
    }

    /** @return array<string, array{array<string, mixed>}> */
    public function malformedPayloads(): array
    {
        return [
            'format 2' => [['command_format' => 2]],
            'sequence as a string' => [['sequence' => '5']],
            'sequence as a float' => [['sequence' => 5.0]],
            'negative sequence' => [['sequence' => -1]],
            'unknown command type' => [['command_type' => 'run_shell']],
            'empty id' => [['id' => '']],
            'install id not a string' => [['install_id' => 12]],
            'id not a UUID' => [['id' => 'cmd-1']],
            'healing log id not a UUID' => [['healing_log_id' => '42']],
            'bundle without a version' => [['bundle' => ['name' => 'add_missing_column', 'sha256' => str_repeat('a', 64)]]],
            'params a list' => [['params' => [1, 2]]],
            'an apply with restore operations too' => [['restore_operations' => []]],
            'expires_at without zone' => [['expires_at' => '2026-12-02T11:00:00']],
            'unknown field' => [['run_after' => 'now']],
        ];
    }

    /**
     * @dataProvider malformedPayloads
     * @param array<string, mixed> $overrides
     */
    public function testMalformedPayloadsAreRefused(array $overrides): void
    {
        [$item, $bundle] = $this->standard($overrides);
        $this->assertRefused(Reason::MALFORMED, $this->verify($item, $bundle));
    }

    public function testTheBundleFieldsAreOnlyCompared(): void
    {
        [$item, $bundle] = $this->standard(['bundle' => ['name' => 'add_missing_column', 'sha256' => strtoupper(hash('sha256', $this->f->bundle())), 'version' => '1.0.3']]);
        $this->assertRefused(Reason::BUNDLE_HASH_MISMATCH, $this->verify($item, $this->f->bundle()));
        [$item] = $this->standard(['bundle' => ['name' => 'add missing', 'sha256' => hash('sha256', $this->f->bundle()), 'version' => '']]);
        $this->assertRefused(Reason::BUNDLE_MISMATCH, $this->verify($item, $this->f->bundle()));
    }

    public function testUuidsCompareInAnyOfTheirForms(): void
    {
        $simple = strtoupper(str_replace('-', '', Fixtures::INSTALL_ID));
        [$item, $bundle, $p] = $this->standard(['install_id' => $simple]);
        $v = $this->verify($item, $bundle);
        self::assertTrue($v->isAccepted(), $v->message());
        self::assertSame(Fixtures::INSTALL_ID, $v->command()->installId());
        self::assertTrue($this->verify($item, $bundle, Fixtures::NOW, null, '{' . strtoupper(Fixtures::INSTALL_ID) . '}')->isAccepted());
    }

    public function testOperationListsAreJudgedInCheck19(): void
    {
        // Their shape is an operation matter, and only after the bundle checks.
        [$item, $bundle] = $this->standard(['operations' => ['op' => 'add_column']]);
        $this->assertRefused(Reason::INVALID_OPERATION, $this->verify($item, $bundle));
        $this->assertRefused(Reason::BUNDLE_HASH_MISMATCH, $this->verify($item, $bundle . ' '));
        [$item, $bundle] = $this->standard(['operations' => null]);
        $this->assertRefused(Reason::INVALID_OPERATION, $this->verify($item, $bundle));
        [$item, $bundle] = $this->standard(['command_type' => 'rollback', 'operations' => [['op' => 'drop_column', 'table' => 't', 'column' => 'c']]]);
        $this->assertRefused(Reason::MALFORMED, $this->verify($item, $bundle));
        $bundle = $this->f->bundle();
        $p = $this->f->payload($bundle);
        unset($p['operations']);
        $this->assertRefused(Reason::MALFORMED, $this->verify($this->f->item($p), $bundle));
    }

    public function testAnApplyWithNoOperationsAppliesNothing(): void
    {
        [$item, $bundle] = $this->standard(['operations' => []]);
        $v = $this->verify($item, $bundle);
        self::assertTrue($v->isAccepted(), $v->message());
        self::assertSame([], $v->operations());
    }

    public function testMissingFieldIsMalformed(): void
    {
        $bundle = $this->f->bundle();
        $p = $this->f->payload($bundle);
        unset($p['healing_log_id']);
        $this->assertRefused(Reason::MALFORMED, $this->verify($this->f->item($p), $bundle));
        $p2 = $this->f->payload($bundle);
        unset($p2['params']);
        $this->assertRefused(Reason::MALFORMED, $this->verify($this->f->item($p2), $bundle));
    }

    public function testSignedPayloadThatIsNotJson(): void
    {
        $bundle = $this->f->bundle();
        $item = $this->f->item($this->f->payload($bundle), null, null, '{"id":');
        $this->assertRefused(Reason::MALFORMED, $this->verify($item, $bundle));
    }

    // --- 10–12. install, expiry, sequence ---------------------------------------------------

    public function testWrongInstall(): void
    {
        [$item, $bundle] = $this->standard(['install_id' => Fixtures::uuid()]);
        $v = $this->verify($item, $bundle);
        $this->assertRefused(Reason::WRONG_INSTALL, $v);
        self::assertNotNull($v->command(), 'the authentic payload travels with the refusal');
        $this->assertRefused(Reason::WRONG_INSTALL, $this->verify($this->standard()[0], $bundle, Fixtures::NOW, null, null));
    }

    public function testCommandExpiry(): void
    {
        [$item, $bundle] = $this->standard();
        $this->assertRefused(Reason::COMMAND_EXPIRED, $this->verify($item, $bundle, '2026-12-02T11:00:00Z'));
        self::assertTrue($this->verify($item, $bundle, '2026-12-02T10:59:59.999Z')->isAccepted());
    }

    public function testReplayAndOrder(): void
    {
        $this->journal->recordAccepted(5, [], null);
        [$replay, $bundle] = $this->standard(['sequence' => 5]);
        $this->assertRefused(Reason::REPLAYED, $this->verify($replay, $bundle));
        [$old, $bundle] = $this->standard(['sequence' => 4]);
        $this->assertRefused(Reason::OUT_OF_ORDER, $this->verify($old, $bundle));
        [$next, $bundle] = $this->standard(['sequence' => 6]);
        self::assertTrue($this->verify($next, $bundle)->isAccepted());
    }

    public function testARedeliveryOfAJournaledIdPassesWhateverItsSequence(): void
    {
        $id = Fixtures::uuid();
        $this->journal->recordAccepted(9, [], CommandRecord::known($id, 7));
        [$again, $bundle] = $this->standard(['id' => $id, 'sequence' => 8]);
        $v = $this->verify($again, $bundle);
        self::assertTrue($v->isAccepted(), $v->message());
        self::assertTrue($v->isRedelivery());
        // …but the very delivery the journal recorded, again, is a replay.
        [$same, $bundle] = $this->standard(['id' => $id, 'sequence' => 7]);
        $this->assertRefused(Reason::OUT_OF_ORDER, $this->verify($same, $bundle));
    }

    // --- 13–18. the bundle ------------------------------------------------------------------

    public function testBundleTooLarge(): void
    {
        $bundle = $this->f->bundle() . str_repeat(' ', 8 * 1024 * 1024);
        $item = $this->f->item($this->f->payload($bundle));
        $this->assertRefused(Reason::BUNDLE_TOO_LARGE, $this->verify($item, $bundle));
    }

    public function testBundleHashIsOfTheFileBytes(): void
    {
        [$item, $bundle] = $this->standard();
        $this->assertRefused(Reason::BUNDLE_HASH_MISMATCH, $this->verify($item, $bundle . ' '));
        $this->assertRefused(Reason::BUNDLE_HASH_MISMATCH, $this->verify($item, $this->f->bundle(['description' => 'another'])));
    }

    /**
     * A bundle whose file the command names exactly (so checks 13 and 14 pass) but which is
     * wrong in itself.
     */
    private function withBundle(string $bundle, array $payload = []): Verdict
    {
        return $this->verify($this->f->item($this->f->payload($bundle, $payload)), $bundle);
    }

    public function testBundleSignedByAnUntrustedKey(): void
    {
        $this->assertRefused(Reason::BUNDLE_UNKNOWN_KEY, $this->withBundle($this->f->bundle([], null, [Fixtures::keyPair()])));
        $this->assertRefused(Reason::BUNDLE_UNKNOWN_KEY, $this->withBundle($this->f->bundle([], null, [])));
    }

    public function testBundleWhoseManifestWasChanged(): void
    {
        $bundle = $this->f->bundle([], function (array $file): array {
            $file['manifest'] = base64_encode(str_replace('"1.0.3"', '"1.0.9"', (string) base64_decode($file['manifest'], true)));
            return $file;
        });
        $this->assertRefused(Reason::BUNDLE_SIGNATURE_INVALID, $this->withBundle($bundle));
    }

    public function testBundleSignatureOfAnotherAlgorithm(): void
    {
        $bundle = $this->f->bundle([], static function (array $file): array {
            $file['signatures'][0]['algorithm'] = 'rsa';
            return $file;
        });
        $this->assertRefused(Reason::BUNDLE_SIGNATURE_INVALID, $this->withBundle($bundle));
    }

    /** @return array<string, array{callable(Fixtures): string}> */
    public function invalidBundles(): array
    {
        return [
            'not JSON' => [static fn (Fixtures $f): string => "{\"bundle_format\": 1,"],
            'format 2' => [static fn (Fixtures $f): string => $f->bundle([], static function (array $b): array { $b['bundle_format'] = 2; return $b; })],
            'unknown field' => [static fn (Fixtures $f): string => $f->bundle([], static function (array $b): array { $b['note'] = 'x'; return $b; })],
            'no operations declared' => [static fn (Fixtures $f): string => $f->bundle(['operations' => []])],
            'operations missing' => [static function (Fixtures $f): string {
                $m = $f->manifest();
                unset($m['operations']);
                return $f->bundle([], null, null, (string) json_encode($m));
            }],
            'drop_column declared' => [static fn (Fixtures $f): string => $f->bundle(['operations' => ['add_column', 'drop_column']])],
            'kind declared twice' => [static fn (Fixtures $f): string => $f->bundle(['operations' => ['add_column', 'add_column']])],
            'unknown kind' => [static fn (Fixtures $f): string => $f->bundle(['operations' => ['run_sql']])],
            'abi 2' => [static fn (Fixtures $f): string => $f->bundle(['abi_version' => 2])],
            'version not semver' => [static fn (Fixtures $f): string => $f->bundle(['version' => '1.0'])],
            'unknown manifest field' => [static fn (Fixtures $f): string => $f->bundle(['entrypoint' => 'main'])],
            'manifest not JSON' => [static fn (Fixtures $f): string => $f->bundle([], null, null, 'not json')],
        ];
    }

    /** @dataProvider invalidBundles */
    public function testInvalidBundles(callable $make): void
    {
        $this->assertRefused(Reason::BUNDLE_INVALID, $this->withBundle($make($this->f)));
    }

    public function testBundleBase64MustBeCanonical(): void
    {
        $bundle = $this->f->bundle([], static function (array $b): array {
            $b['module'] = chunk_split($b['module'], 76, "\n");
            return $b;
        });
        $this->assertRefused(Reason::BUNDLE_INVALID, $this->withBundle($bundle));
        $manifest = $this->f->bundle([], static function (array $b): array {
            $b['manifest'] = rtrim($b['manifest'], '=') . ' ';
            return $b;
        });
        $this->assertRefused(Reason::BUNDLE_INVALID, $this->withBundle($manifest));
        $signature = $this->f->bundle([], static function (array $b): array {
            $b['signatures'][0]['signature'] = "\n" . $b['signatures'][0]['signature'];
            return $b;
        });
        $this->assertRefused(Reason::BUNDLE_SIGNATURE_INVALID, $this->withBundle($signature));
    }

    public function testABundleSignatureByAnUnknownKeyIsNotEvenRead(): void
    {
        $stranger = Fixtures::keyPair();
        $bundle = $this->f->bundle([], static function (array $b): array {
            $b['signatures'][] = ['key_id' => '0123456789abcdef', 'algorithm' => 'rsa', 'signature' => 'not base64!'];
            return $b;
        }, [$stranger, $this->f->root]);
        self::assertTrue($this->withBundle($bundle)->isAccepted());
    }

    public function testBundleModuleMustMatchTheManifest(): void
    {
        $other = base64_encode("\0asm\x01\0\0\0" . random_bytes(40));
        $this->assertRefused(Reason::BUNDLE_MODULE_MISMATCH, $this->withBundle($this->f->bundle([], static function (array $b) use ($other): array {
            $b['module'] = $other;
            return $b;
        })));
        $this->assertRefused(Reason::BUNDLE_MODULE_MISMATCH, $this->withBundle($this->f->bundle(['module_size_bytes' => strlen($this->f->module) + 1])));
    }

    public function testBundleMustBeTheOneTheCommandNames(): void
    {
        $bundle = $this->f->bundle(['version' => '1.0.4']);
        $this->assertRefused(Reason::BUNDLE_MISMATCH, $this->withBundle($bundle));
        $this->assertRefused(Reason::BUNDLE_MISMATCH, $this->withBundle($this->f->bundle(['name' => 'update_memory_limit'])));
    }

    public function testBundleExpiry(): void
    {
        $bundle = $this->f->bundle(['expires_at' => '2026-12-02T10:30:00Z']);
        $this->assertRefused(Reason::BUNDLE_EXPIRED, $this->withBundle($bundle));
    }

    public function testDowngradeIsRefusedAndTheSameVersionIsFine(): void
    {
        $this->journal->recordAccepted(0, ['add_missing_column' => '1.0.3'], null);
        self::assertTrue($this->withBundle($this->f->bundle())->isAccepted(), 'the same version serves several commands');
        $this->journal->recordAccepted(0, ['add_missing_column' => '1.0.10'], null);
        $this->assertRefused(Reason::DOWNGRADE, $this->withBundle($this->f->bundle()));
    }

    // --- 19. operations ---------------------------------------------------------------------

    /** @return array<string, array{list<array<string, mixed>>}> */
    public function invalidOperations(): array
    {
        $add = ['column' => 'merchant_fee', 'column_type' => 'DECIMAL(10,2)', 'op' => 'add_column', 'table' => 'wp_molam_orders'];
        return [
            'type not allowed' => [[array_merge($add, ['column_type' => 'BLOB'])]],
            'type with SQL' => [[array_merge($add, ['column_type' => 'INT; DROP TABLE wp_users'])]],
            'lower-case type' => [[array_merge($add, ['column_type' => 'decimal(10,2)'])]],
            'table not an identifier' => [[array_merge($add, ['table' => 'wp_orders`; --'])]],
            'unknown field' => [[array_merge($add, ['default' => '0'])]],
            'unknown op' => [[['op' => 'run_sql', 'sql' => 'DROP TABLE x']]],
            'not an object' => [['add_column']],
            'drop_column in an apply' => [[['op' => 'drop_column', 'table' => 'wp_molam_orders', 'column' => 'amount']]],
            'too many' => [array_fill(0, 65, $add)],
        ];
    }

    /**
     * @dataProvider invalidOperations
     * @param list<array<string, mixed>> $operations
     */
    public function testInvalidOperations(array $operations): void
    {
        [$item, $bundle] = $this->standard(['operations' => $operations]);
        $this->assertRefused(Reason::INVALID_OPERATION, $this->verify($item, $bundle));
    }

    public function testOperationsMustBeDeclared(): void
    {
        [$item, $bundle] = $this->standard(['operations' => [['key' => 'memory_limit', 'op' => 'set_config', 'value' => '256M']]]);
        $this->assertRefused(Reason::UNDECLARED_OPERATION, $this->verify($item, $bundle));
    }

    public function testFormIsJudgedBeforeDeclaration(): void
    {
        [$item, $bundle] = $this->standard(['operations' => [
            ['key' => 'memory_limit', 'op' => 'set_config', 'value' => '256M'],
            ['column' => 'c', 'column_type' => 'BLOB', 'op' => 'add_column', 'table' => 't'],
        ]]);
        $this->assertRefused(Reason::INVALID_OPERATION, $this->verify($item, $bundle));
    }

    public function testRollbackRestoresOnlyInversesOfDeclaredKinds(): void
    {
        $bundle = $this->f->bundle();
        $ok = $this->verify($this->f->item($this->f->payload($bundle, ['command_type' => 'rollback'])), $bundle);
        self::assertTrue($ok->isAccepted(), $ok->message());
        self::assertSame('drop_column', $ok->operations()[0]->kind());

        $config = $this->f->payload($bundle, ['command_type' => 'rollback', 'restore_operations' => [['key' => 'memory_limit', 'op' => 'unset_config']]]);
        $this->assertRefused(Reason::UNDECLARED_OPERATION, $this->verify($this->f->item($config), $bundle));

        $configBundle = $this->f->bundle(['operations' => ['set_config']]);
        $back = $this->f->payload($configBundle, ['command_type' => 'rollback', 'restore_operations' => [
            ['key' => 'memory_limit', 'op' => 'set_config', 'value' => '128M'], ['key' => 'x.y', 'op' => 'unset_config'],
        ]]);
        self::assertTrue($this->verify($this->f->item($back), $configBundle)->isAccepted());

        $notify = $this->f->payload($bundle, ['command_type' => 'rollback', 'restore_operations' => [['column' => 'c', 'column_type' => 'INT', 'op' => 'add_column', 'table' => 't']]]);
        $this->assertRefused(Reason::UNDECLARED_OPERATION, $this->verify($this->f->item($notify), $bundle));
    }

    // --- trust ------------------------------------------------------------------------------

    public function testRootRotation(): void
    {
        $new = Fixtures::keyPair();
        $bundle = $this->f->bundle([], null, [$this->f->root, $new]);
        $item = $this->f->item($this->f->payload($bundle), null, $this->f->certificate([], [$this->f->root, $new]));
        self::assertTrue($this->verify($item, $bundle, Fixtures::NOW, [base64_encode($new['public'])])->isAccepted(), 'trusting only the new root');
        self::assertTrue($this->verify($item, $bundle, Fixtures::NOW, [$this->f->rootBase64(), base64_encode($new['public'])])->isAccepted(), 'trusting both');
    }

    public function testWithoutABundleOnlyTheCommandIsChecked(): void
    {
        [$item] = $this->standard();
        $v = $this->verify($item, null);
        self::assertTrue($v->isAccepted());
        self::assertNull($v->manifest());
        [$bad] = $this->standard(['operations' => [['op' => 'drop_column', 'table' => 't', 'column' => 'c']]]);
        $this->assertRefused(Reason::INVALID_OPERATION, $this->verify($bad, null));
    }

    public function testTheReasonSetIsClosed(): void
    {
        self::assertCount(24, Reason::refusals());
        self::assertNotContains('ok', Reason::refusals());
    }
}
