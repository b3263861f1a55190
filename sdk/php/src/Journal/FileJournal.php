<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Journal;

use Autoheal\Sdk\Support\ErrorTrap;
use Autoheal\Sdk\Support\Json;
use Autoheal\Sdk\Support\JsonException;

/**
 * The journal as one JSON document in a directory the plugin owns (keep it out of the web
 * root). Every change is read–modify–write under an exclusive flock, written to a temporary
 * file, flushed (fsync where PHP has it) and renamed over the document: a reader sees the
 * old document or the new one, never half of one, and a crash loses at most the change
 * being made.
 */
final class FileJournal implements Journal
{
    /** Finished records kept by default; older ones go (their sequence still guards against replays). */
    public const KEEP_FINISHED = 1000;

    private string $dir;
    private int $keepFinished;
    private string $file;
    /** @var resource|null */
    private $tickLock = null;

    public function __construct(string $dir, int $keepFinished = self::KEEP_FINISHED)
    {
        if ($keepFinished < 1) {
            throw new \InvalidArgumentException('keep at least one finished record');
        }
        $this->keepFinished = $keepFinished;
        $this->dir = rtrim($dir, '/');
        if (!is_dir($this->dir)) {
            $this->io('create ' . $this->dir, fn () => mkdir($this->dir, 0700, true));
        }
        $this->file = $this->dir . '/journal.json';
    }

    public function lastSequence(): int
    {
        return $this->read()['last_sequence'];
    }

    public function newestBundleVersion(string $name): ?string
    {
        return $this->read()['bundle_versions'][$name] ?? null;
    }

    public function installationId(): ?string
    {
        return $this->read()['installation_id'];
    }

    public function rememberInstallationId(string $installationId): void
    {
        if ($this->installationId() === $installationId) {
            return;
        }
        $this->mutate(static function (array &$doc) use ($installationId): void {
            $doc['installation_id'] = $installationId;
        });
    }

    public function find(string $commandId): ?CommandRecord
    {
        $record = $this->read()['commands'][$commandId] ?? null;
        return $record === null ? null : CommandRecord::fromArray($record);
    }

    public function recordAccepted(int $sequence, array $bundleVersions, ?CommandRecord $record): void
    {
        $this->mutate(static function (array &$doc) use ($sequence, $bundleVersions, $record): void {
            $doc['last_sequence'] = max($doc['last_sequence'], $sequence);
            foreach ($bundleVersions as $name => $version) {
                $doc['bundle_versions'][(string) $name] = Versions::newer($doc['bundle_versions'][(string) $name] ?? null, $version);
            }
            if ($record !== null) {
                $doc['commands'][$record->id()] = $record->toArray();
            }
        });
    }

    public function save(CommandRecord $record): void
    {
        $this->mutate(static function (array &$doc) use ($record): void {
            $doc['commands'][$record->id()] = $record->toArray();
        });
    }

    public function undeliveredAcks(): array
    {
        return $this->records(static fn (CommandRecord $r): bool => $r->ackState() === CommandRecord::ACK_PENDING);
    }

    public function interrupted(): array
    {
        return $this->records(static fn (CommandRecord $r): bool => $r->phase() === CommandRecord::PHASE_APPLYING);
    }

    public function addToInbox(string $commandId, string $json): void
    {
        $this->mutate(static function (array &$doc) use ($commandId, $json): void {
            foreach ($doc['inbox'] as $i => $entry) {
                if ($entry['id'] === $commandId) {
                    $doc['inbox'][$i]['json'] = $json;
                    return;
                }
            }
            $doc['inbox'][] = ['id' => $commandId, 'json' => $json];
        });
    }

    public function removeFromInbox(string $commandId): void
    {
        $this->mutate(static function (array &$doc) use ($commandId): void {
            $doc['inbox'] = array_values(array_filter($doc['inbox'], static fn (array $e): bool => $e['id'] !== $commandId));
        });
    }

    public function inbox(): array
    {
        $inbox = [];
        foreach ($this->read()['inbox'] as $entry) {
            $inbox[$entry['id']] = $entry['json'];
        }
        return $inbox;
    }

    public function acquireLock(int $ttlSeconds): bool
    {
        if ($this->tickLock !== null) {
            return false;
        }
        // flock is released by the OS when the holder dies, so the TTL is not needed here.
        $handle = $this->io('open the tick lock', fn () => fopen($this->dir . '/tick.lock', 'c'));
        if (!flock($handle, LOCK_EX | LOCK_NB)) {
            fclose($handle);
            return false;
        }
        $this->tickLock = $handle;
        return true;
    }

    public function releaseLock(): void
    {
        if ($this->tickLock !== null) {
            flock($this->tickLock, LOCK_UN);
            fclose($this->tickLock);
            $this->tickLock = null;
        }
    }

    /**
     * @param callable(CommandRecord): bool $keep
     * @return list<CommandRecord>
     */
    private function records(callable $keep): array
    {
        $out = [];
        foreach ($this->read()['commands'] as $data) {
            $record = CommandRecord::fromArray($data);
            if ($keep($record)) {
                $out[] = $record;
            }
        }
        return $out;
    }

    /** @param callable(array<string, mixed>&): void $change */
    private function mutate(callable $change): void
    {
        // A separate lock file: the document itself is replaced by rename on every write.
        $lock = $this->io('open the journal lock', fn () => fopen($this->dir . '/journal.lock', 'c'));
        try {
            if (!flock($lock, LOCK_EX)) {
                throw new JournalException('cannot lock the journal in ' . $this->dir);
            }
            $doc = $this->read();
            $change($doc);
            $this->prune($doc);
            // Maps stay JSON objects even when empty.
            $doc['bundle_versions'] = (object) $doc['bundle_versions'];
            $doc['commands'] = (object) $doc['commands'];
            $this->write(Json::encode($doc));
        } finally {
            flock($lock, LOCK_UN);
            fclose($lock);
        }
    }

    /** @param array<string, mixed> $doc */
    private function prune(array &$doc): void
    {
        $finished = [];
        foreach ($doc['commands'] as $id => $r) {
            if (($r['phase'] ?? '') === CommandRecord::PHASE_DONE && in_array($r['ack_state'] ?? '', [CommandRecord::ACK_DELIVERED, CommandRecord::ACK_REJECTED], true)) {
                $finished[$id] = (int) ($r['updated_at'] ?? 0);
            }
        }
        if (count($finished) <= $this->keepFinished) {
            return;
        }
        asort($finished);
        foreach (array_slice(array_keys($finished), 0, count($finished) - $this->keepFinished) as $id) {
            unset($doc['commands'][$id]);
        }
    }

    private function write(string $bytes): void
    {
        $tmp = $this->file . '.' . bin2hex(random_bytes(6)) . '.tmp';
        $handle = $this->io('create ' . $tmp, fn () => fopen($tmp, 'xb'));
        try {
            $written = $this->io('write ' . $tmp, fn () => fwrite($handle, $bytes));
            if ($written !== strlen($bytes) || !fflush($handle)) {
                throw new JournalException('short write to ' . $tmp);
            }
            if (function_exists('fsync') && !fsync($handle)) {   // PHP 8.1+
                throw new JournalException('fsync failed on ' . $tmp);
            }
        } finally {
            fclose($handle);
        }
        try {
            $this->io('replace ' . $this->file, fn () => rename($tmp, $this->file));
        } catch (JournalException $e) {
            if (is_file($tmp)) {
                unlink($tmp);
            }
            throw $e;
        }
    }

    /** @return array{installation_id: ?string, last_sequence: int, bundle_versions: array<string, string>, commands: array<string, array<string, mixed>>, inbox: list<array{id: string, json: string}>} */
    private function read(): array
    {
        $empty = ['journal_format' => 1, 'installation_id' => null, 'last_sequence' => 0, 'bundle_versions' => [], 'commands' => [], 'inbox' => []];
        clearstatcache(true, $this->file);
        if (!is_file($this->file)) {
            return $empty;
        }
        $bytes = $this->io('read ' . $this->file, fn () => file_get_contents($this->file));
        try {
            $doc = Json::decodeObject($bytes);
        } catch (JsonException $e) {
            // Never start over: an empty journal would accept every replay.
            throw new JournalException('the journal ' . $this->file . ' is not valid JSON; restore it or remove it deliberately');
        }
        $ok = ($doc['journal_format'] ?? null) === 1
            && is_int($doc['last_sequence'] ?? null)
            && array_key_exists('installation_id', $doc) && (is_string($doc['installation_id']) || $doc['installation_id'] === null)
            && is_array($doc['bundle_versions'] ?? null) && is_array($doc['commands'] ?? null) && is_array($doc['inbox'] ?? null);
        if ($ok) {
            foreach ($doc['bundle_versions'] as $v) {
                $ok = $ok && is_string($v);
            }
            foreach ($doc['inbox'] as $e) {
                $ok = $ok && is_array($e) && is_string($e['id'] ?? null) && is_string($e['json'] ?? null);
            }
        }
        if (!$ok) {
            throw new JournalException('the journal ' . $this->file . ' does not have the journal\'s shape');
        }
        return $doc + $empty;
    }

    /**
     * @template T
     * @param callable(): T $call
     * @return T
     */
    private function io(string $what, callable $call)
    {
        $result = ErrorTrap::call($call, static fn (string $w): JournalException => new JournalException('cannot ' . $what . ': ' . $w));
        if ($result === false) {
            throw new JournalException('cannot ' . $what);
        }
        return $result;
    }
}
