<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Journal;

use Autoheal\Sdk\Database\Database;
use Autoheal\Sdk\Database\SqlDialect;
use Autoheal\Sdk\Support\Json;
use Autoheal\Sdk\Support\JsonException;

/**
 * The journal in the plugin's own database (MySQL/MariaDB or SQLite), in tables
 * `{prefix}autoheal_journal_*` created when missing. Each change is one transaction; the
 * last sequence only moves up through a conditional UPDATE, so no interleaving can lower it.
 *
 * It may share the shop's connection: MySQL commits any open transaction when DDL runs, and
 * the journal never keeps one open while operations are applied.
 */
final class PdoJournal implements Journal
{
    private const LOCK_NAME = 'tick';

    private \PDO $pdo;
    private SqlDialect $dialect;
    /** @var array<string, string> logical name => quoted table */
    private array $t;
    private ?string $lockHolder = null;

    public function __construct(\PDO $pdo, string $tablePrefix = '')
    {
        $this->pdo = $pdo;
        $this->dialect = Database::dialect($pdo);
        foreach (['state', 'bundles', 'commands', 'inbox', 'lock'] as $name) {
            $this->t[$name] = $this->dialect->quote($tablePrefix . 'autoheal_journal_' . $name);
        }
        $this->createTables();
    }

    public function lastSequence(): int
    {
        return (int) $this->query('SELECT last_sequence FROM ' . $this->t['state'] . ' WHERE id = 1')->fetchColumn();
    }

    public function newestBundleVersion(string $name): ?string
    {
        $v = $this->query('SELECT version FROM ' . $this->t['bundles'] . ' WHERE name = ?', [$name])->fetchColumn();
        return $v === false ? null : (string) $v;
    }

    public function installationId(): ?string
    {
        $v = $this->query('SELECT installation_id FROM ' . $this->t['state'] . ' WHERE id = 1')->fetchColumn();
        return $v === false || $v === null ? null : (string) $v;
    }

    public function rememberInstallationId(string $installationId): void
    {
        $this->query('UPDATE ' . $this->t['state'] . ' SET installation_id = ? WHERE id = 1', [$installationId]);
    }

    public function find(string $commandId): ?CommandRecord
    {
        $json = $this->query('SELECT record FROM ' . $this->t['commands'] . ' WHERE id = ?', [$commandId])->fetchColumn();
        return $json === false ? null : $this->record((string) $json);
    }

    public function recordAccepted(int $sequence, array $bundleVersions, ?CommandRecord $record): void
    {
        $this->transaction(function () use ($sequence, $bundleVersions, $record): void {
            $this->query('UPDATE ' . $this->t['state'] . ' SET last_sequence = ? WHERE id = 1 AND last_sequence < ?', [$sequence, $sequence]);
            foreach ($bundleVersions as $name => $version) {
                $newest = Versions::newer($this->newestBundleVersion((string) $name), $version);
                $this->query('REPLACE INTO ' . $this->t['bundles'] . ' (name, version) VALUES (?, ?)', [(string) $name, $newest]);
            }
            if ($record !== null) {
                $this->write($record);
            }
        });
    }

    public function save(CommandRecord $record): void
    {
        $this->transaction(function () use ($record): void {
            $this->write($record);
        });
    }

    public function undeliveredAcks(): array
    {
        return $this->records('ack_state = ?', [CommandRecord::ACK_PENDING]);
    }

    public function interrupted(): array
    {
        return $this->records('phase = ?', [CommandRecord::PHASE_APPLYING]);
    }

    public function addToInbox(string $commandId, string $json): void
    {
        $this->transaction(function () use ($commandId, $json): void {
            $updated = $this->query('UPDATE ' . $this->t['inbox'] . ' SET command = ? WHERE id = ?', [$json, $commandId])->rowCount();
            $exists = $updated > 0 || $this->query('SELECT 1 FROM ' . $this->t['inbox'] . ' WHERE id = ?', [$commandId])->fetchColumn() !== false;
            if (!$exists) {
                $position = (int) $this->query('SELECT COALESCE(MAX(position), 0) + 1 FROM ' . $this->t['inbox'])->fetchColumn();
                $this->query('INSERT INTO ' . $this->t['inbox'] . ' (id, position, command) VALUES (?, ?, ?)', [$commandId, $position, $json]);
            }
        });
    }

    public function removeFromInbox(string $commandId): void
    {
        $this->query('DELETE FROM ' . $this->t['inbox'] . ' WHERE id = ?', [$commandId]);
    }

    public function inbox(): array
    {
        $inbox = [];
        foreach ($this->query('SELECT id, command FROM ' . $this->t['inbox'] . ' ORDER BY position')->fetchAll(\PDO::FETCH_NUM) as [$id, $json]) {
            $inbox[(string) $id] = (string) $json;
        }
        return $inbox;
    }

    public function acquireLock(int $ttlSeconds): bool
    {
        if ($this->lockHolder !== null) {
            return false;
        }
        $holder = bin2hex(random_bytes(16));
        $now = time();
        try {
            $this->pdo->prepare('INSERT INTO ' . $this->t['lock'] . ' (name, holder, expires_at) VALUES (?, ?, ?)')
                ->execute([self::LOCK_NAME, $holder, $now + $ttlSeconds]);
        } catch (\PDOException $e) {
            if ((string) $e->getCode() !== '23000') {
                throw new JournalException('journal lock: ' . $e->getMessage(), 0, $e);
            }
            // Held: take it over only if its holder let it expire (the holder died).
            $taken = $this->query(
                'UPDATE ' . $this->t['lock'] . ' SET holder = ?, expires_at = ? WHERE name = ? AND expires_at < ?',
                [$holder, $now + $ttlSeconds, self::LOCK_NAME, $now]
            )->rowCount();
            if ($taken !== 1) {
                return false;
            }
        }
        $this->lockHolder = $holder;
        return true;
    }

    public function releaseLock(): void
    {
        if ($this->lockHolder !== null) {
            $this->query('DELETE FROM ' . $this->t['lock'] . ' WHERE name = ? AND holder = ?', [self::LOCK_NAME, $this->lockHolder]);
            $this->lockHolder = null;
        }
    }

    private function write(CommandRecord $record): void
    {
        $this->query('REPLACE INTO ' . $this->t['commands'] . ' (id, phase, ack_state, record, updated_at) VALUES (?, ?, ?, ?, ?)', [
            $record->id(), $record->phase(), $record->ackState(), Json::encode($record->toArray()), $record->updatedAt(),
        ]);
    }

    /**
     * @param list<scalar> $params
     * @return list<CommandRecord>
     */
    private function records(string $where, array $params): array
    {
        $out = [];
        foreach ($this->query('SELECT record FROM ' . $this->t['commands'] . ' WHERE ' . $where . ' ORDER BY updated_at, id', $params)->fetchAll(\PDO::FETCH_COLUMN) as $json) {
            $out[] = $this->record((string) $json);
        }
        return $out;
    }

    private function record(string $json): CommandRecord
    {
        try {
            return CommandRecord::fromArray(Json::toArray(Json::decode($json)));
        } catch (JsonException $e) {
            throw new JournalException('a journal record is not valid JSON');
        }
    }

    private function createTables(): void
    {
        $doc = $this->dialect->documentType();
        $options = $this->dialect->tableOptions();
        $this->exec('CREATE TABLE IF NOT EXISTS ' . $this->t['state'] . ' (id INTEGER NOT NULL PRIMARY KEY, last_sequence BIGINT NOT NULL, installation_id VARCHAR(128) NULL)' . $options);
        $this->exec('CREATE TABLE IF NOT EXISTS ' . $this->t['bundles'] . ' (name VARCHAR(64) NOT NULL PRIMARY KEY, version VARCHAR(128) NOT NULL)' . $options);
        $this->exec('CREATE TABLE IF NOT EXISTS ' . $this->t['commands'] . ' (id VARCHAR(128) NOT NULL PRIMARY KEY, phase VARCHAR(16) NOT NULL, ack_state VARCHAR(16) NOT NULL, record ' . $doc . ' NOT NULL, updated_at BIGINT NOT NULL)' . $options);
        $this->exec('CREATE TABLE IF NOT EXISTS ' . $this->t['inbox'] . ' (id VARCHAR(128) NOT NULL PRIMARY KEY, position BIGINT NOT NULL, command ' . $doc . ' NOT NULL)' . $options);
        $this->exec('CREATE TABLE IF NOT EXISTS ' . $this->t['lock'] . ' (name VARCHAR(32) NOT NULL PRIMARY KEY, holder VARCHAR(64) NOT NULL, expires_at BIGINT NOT NULL)' . $options);
        if ($this->query('SELECT COUNT(*) FROM ' . $this->t['state'])->fetchColumn() == 0) {
            try {
                $this->pdo->exec('INSERT INTO ' . $this->t['state'] . ' (id, last_sequence) VALUES (1, 0)');
            } catch (\PDOException $e) {
                if ((string) $e->getCode() !== '23000') {   // another process inserted it first
                    throw new JournalException('journal: ' . $e->getMessage(), 0, $e);
                }
            }
        }
    }

    /** @param callable(): void $work */
    private function transaction(callable $work): void
    {
        try {
            $this->pdo->beginTransaction();
        } catch (\PDOException $e) {
            throw new JournalException('journal: cannot begin a transaction: ' . $e->getMessage(), 0, $e);
        }
        try {
            $work();
            $this->pdo->commit();
        } catch (\Throwable $e) {
            if ($this->pdo->inTransaction()) {
                $this->pdo->rollBack();
            }
            throw $e instanceof JournalException ? $e : new JournalException('journal: ' . $e->getMessage(), 0, $e);
        }
    }

    private function exec(string $sql): void
    {
        try {
            $this->pdo->exec($sql);
        } catch (\PDOException $e) {
            throw new JournalException('journal: ' . $e->getMessage(), 0, $e);
        }
    }

    /** @param list<scalar|null> $params */
    private function query(string $sql, array $params = []): \PDOStatement
    {
        try {
            $statement = $this->pdo->prepare($sql);
            $statement->execute($params);
            return $statement;
        } catch (\PDOException $e) {
            throw new JournalException('journal: ' . $e->getMessage(), 0, $e);
        }
    }
}
