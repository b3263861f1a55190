<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Journal;

/**
 * The plugin's durable memory of commands (sdk/PROTOCOL.md, "The journal"): the last
 * accepted sequence, the newest accepted bundle version per patch, the inbox of fetched
 * commands not yet acked, and per command id its verdict, progress and ack. Every method
 * either completes durably or throws JournalException.
 */
interface Journal
{
    public function lastSequence(): int;

    public function newestBundleVersion(string $name): ?string;

    public function installationId(): ?string;

    public function rememberInstallationId(string $installationId): void;

    public function find(string $commandId): ?CommandRecord;

    /**
     * In one atomic write: the last sequence becomes max(last, $sequence), each bundle
     * version becomes the newest accepted for its name when it is above the one recorded,
     * and $record (if given) is saved. Called before anything is applied, so a crash after
     * applying never lets the same command in twice.
     *
     * @param array<string, string> $bundleVersions name => semantic version
     */
    public function recordAccepted(int $sequence, array $bundleVersions, ?CommandRecord $record): void;

    public function save(CommandRecord $record): void;

    /** @return list<CommandRecord> records whose ack the server does not have yet */
    public function undeliveredAcks(): array;

    /** @return list<CommandRecord> applies that were under way when the process stopped */
    public function interrupted(): array;

    /** Keeps a fetched command (its JSON as received) until it is acked; a newer copy of the same id replaces it. */
    public function addToInbox(string $commandId, string $json): void;

    public function removeFromInbox(string $commandId): void;

    /** @return array<string, string> command id => JSON, in order of first arrival */
    public function inbox(): array;

    /**
     * One tick at a time (WP-Cron may start two). False when another holds it; a holder
     * that died loses it after $ttlSeconds.
     */
    public function acquireLock(int $ttlSeconds): bool;

    public function releaseLock(): void;
}
