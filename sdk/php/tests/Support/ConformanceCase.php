<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Support;

use Autoheal\Sdk\Journal\CommandRecord;
use Autoheal\Sdk\Journal\FileJournal;
use Autoheal\Sdk\Time\FixedClock;
use Autoheal\Sdk\Verify\CommandVerifier;
use Autoheal\Sdk\Verify\TrustedRoots;
use Autoheal\Sdk\Verify\Uuid;
use Autoheal\Sdk\Verify\Verdict;

/**
 * One case of the conformance kit (sdk/conformance/cases/<name>/): case.json (the clock,
 * trusted roots, install id, the journal to start from and the expected verdict),
 * command.json (one poll item) and bundle.json (the bundle file's bytes as served).
 */
final class ConformanceCase
{
    public string $dir;
    public string $name;
    public string $description;
    public string $now;
    /** @var list<string> */
    public array $roots;
    public string $installId;
    public int $lastSequence;
    /** @var array<string, string> */
    public array $bundleVersions;
    /** @var list<string> */
    public array $commandIds;
    /** Pad bundle.json with spaces to this many bytes (the oversized-bundle case). */
    public ?int $padBundleTo;
    public string $expectedVerdict;
    public string $expectedReason;

    /** The default kit, or AUTOHEAL_CONFORMANCE_DIR. */
    public static function directory(): string
    {
        $dir = getenv('AUTOHEAL_CONFORMANCE_DIR');
        return $dir !== false && $dir !== '' ? $dir : dirname(__DIR__, 3) . '/conformance/cases';
    }

    /** @return list<string> case directories, sorted */
    public static function find(string $root): array
    {
        $dirs = is_dir($root) ? glob($root . '/*/case.json') : [];
        $dirs = array_map('dirname', $dirs === false ? [] : $dirs);
        sort($dirs);
        return $dirs;
    }

    public static function load(string $dir): self
    {
        $raw = file_get_contents($dir . '/case.json');
        $c = json_decode((string) $raw, true, 64, JSON_THROW_ON_ERROR);
        $bad = static fn (string $what): \UnexpectedValueException => new \UnexpectedValueException($dir . '/case.json: ' . $what);
        if (!is_array($c)) {
            throw $bad('not an object');
        }
        foreach (['now', 'install_id'] as $f) {
            if (!is_string($c[$f] ?? null)) {
                throw $bad($f . ' must be a string');
            }
        }
        if (!is_array($c['trusted_roots'] ?? null) || $c['trusted_roots'] === []) {
            throw $bad('trusted_roots must be a non-empty list');
        }
        $journal = $c['journal'] ?? [];
        $expected = $c['expected'] ?? null;
        if (!is_array($journal) || !is_array($expected) || !in_array($expected['verdict'] ?? null, ['accept', 'refuse'], true) || !is_string($expected['reason'] ?? null)) {
            throw $bad('journal must be an object, expected {verdict: accept|refuse, reason}');
        }
        $case = new self();
        $case->dir = $dir;
        $case->name = is_string($c['name'] ?? null) ? $c['name'] : basename($dir);
        $case->description = is_string($c['description'] ?? null) ? $c['description'] : '';
        $case->now = $c['now'];
        $case->roots = array_values($c['trusted_roots']);
        $case->installId = $c['install_id'];
        $case->lastSequence = (int) ($journal['last_sequence'] ?? 0);
        $case->bundleVersions = (array) ($journal['bundle_versions'] ?? []);
        $case->commandIds = array_values((array) ($journal['command_ids'] ?? []));
        $case->padBundleTo = isset($c['pad_bundle_to']) ? (int) $c['pad_bundle_to'] : null;
        $case->expectedVerdict = $expected['verdict'];
        $case->expectedReason = $expected['reason'];
        return $case;
    }

    /** bundle.json's bytes exactly, padded when the case says (null: the case has none). */
    public function bundle(): ?string
    {
        if (!is_file($this->dir . '/bundle.json')) {
            return null;
        }
        $bytes = (string) file_get_contents($this->dir . '/bundle.json');
        if ($this->padBundleTo !== null && strlen($bytes) < $this->padBundleTo) {
            $bytes .= str_repeat(' ', $this->padBundleTo - strlen($bytes));
        }
        return $bytes;
    }

    /** A file journal in $dir holding what the case's `journal` says. */
    public function seed(string $dir): FileJournal
    {
        $journal = new FileJournal($dir);
        $journal->recordAccepted($this->lastSequence, $this->bundleVersions, null);
        foreach ($this->commandIds as $id) {
            $journal->save(CommandRecord::known(Uuid::normalize((string) $id) ?? (string) $id, null));
        }
        return $journal;
    }

    /** Verifies the case's command with a fresh journal seeded from the case. */
    public function run(): Verdict
    {
        $dir = TempDir::create('conformance');
        try {
            $journal = $this->seed($dir);
            $verifier = new CommandVerifier(TrustedRoots::fromBase64($this->roots), $journal, FixedClock::at($this->now));
            return $verifier->verify((string) file_get_contents($this->dir . '/command.json'), $this->bundle(), $this->installId);
        } finally {
            TempDir::remove($dir);
        }
    }
}
