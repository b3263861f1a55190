<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Cli;

use Autoheal\Sdk\AutohealException;
use Autoheal\Sdk\Journal\CommandRecord;
use Autoheal\Sdk\Journal\FileJournal;
use Autoheal\Sdk\Support\ErrorTrap;
use Autoheal\Sdk\Support\Json;
use Autoheal\Sdk\Time\Clock;
use Autoheal\Sdk\Time\FixedClock;
use Autoheal\Sdk\Time\InvalidTimestamp;
use Autoheal\Sdk\Time\SystemClock;
use Autoheal\Sdk\Verify\CommandVerifier;
use Autoheal\Sdk\Verify\TrustedRoots;
use Autoheal\Sdk\Verify\Verdict;

/**
 * `autoheal-verify`: the SDK's verification of one polled command (and its bundle), as a
 * program. Prints one JSON line {"verdict","reason"}; exit 0 accept, 1 refuse, 2 usage.
 */
final class VerifyCommand
{
    public const USAGE = "usage: autoheal-verify --trusted-root ROOT.pub [--trusted-root ROOT.pub ...] --install-id ID\n"
        . "                       [--state-dir DIR] [--now RFC3339] COMMAND.json [BUNDLE.json]\n"
        . "  COMMAND.json  one item of the command poll's answer\n"
        . "  BUNDLE.json   the bundle file as served (without it, checks 13-18 are skipped and\n"
        . "                the operations are checked for form only)\n"
        . "  --state-dir   a file journal: an accepted command is recorded there, so the same\n"
        . "                command verified again is refused as replayed\n"
        . "  --now         the time to verify at (default: the clock)\n";

    /**
     * @param list<string> $args the arguments after the program name
     * @param resource $stdout
     * @param resource $stderr
     */
    public static function run(array $args, $stdout, $stderr): int
    {
        try {
            $options = self::parse($args);
        } catch (UsageError $e) {
            fwrite($stderr, 'autoheal-verify: ' . $e->getMessage() . "\n" . self::USAGE);
            return 2;
        }
        if ($options === null) {
            fwrite($stdout, self::USAGE);
            return 0;
        }
        $temporary = null;
        try {
            $roots = TrustedRoots::fromFiles($options['roots']);
            $clock = self::clock($options['now']);
            $command = self::read($options['command']);
            $bundle = $options['bundle'] !== null ? self::read($options['bundle']) : null;
            $dir = $options['state_dir'];
            if ($dir === null) {
                $temporary = $dir = sys_get_temp_dir() . '/autoheal-verify-' . bin2hex(random_bytes(8));
            }
            $journal = new FileJournal($dir);
            $verdict = (new CommandVerifier($roots, $journal, $clock))->verify($command, $bundle, $options['install_id']);
            if ($verdict->isAccepted() && $options['state_dir'] !== null) {
                self::record($journal, $verdict);
            }
        } catch (UsageError | \InvalidArgumentException | AutohealException $e) {
            fwrite($stderr, 'autoheal-verify: ' . $e->getMessage() . "\n");
            return 2;
        } finally {
            if ($temporary !== null) {
                self::remove($temporary);
            }
        }
        fwrite($stdout, Json::encode($verdict->toArray()) . "\n");
        fwrite($stderr, ($verdict->isAccepted() ? 'accepted' : 'refused') . ': ' . $verdict->message()
            . ($verdict->isAccepted() && $bundle === null ? ' (no bundle given: checks 13-18 not run)' : '') . "\n");
        return $verdict->isAccepted() ? 0 : 1;
    }

    private static function record(FileJournal $journal, Verdict $verdict): void
    {
        $command = $verdict->command();
        if ($command === null) {
            return;
        }
        $versions = $verdict->manifest() !== null ? [$command->bundle()->name() => $command->bundle()->version()] : [];
        $journal->recordAccepted($command->sequence(), $versions, CommandRecord::known($command->id(), $command->sequence()));
    }

    /**
     * @param list<string> $args
     * @return array{roots: list<string>, install_id: string, state_dir: ?string, now: ?string, command: string, bundle: ?string}|null null for --help
     */
    private static function parse(array $args): ?array
    {
        $roots = [];
        $single = ['--install-id' => null, '--state-dir' => null, '--now' => null];
        $positional = [];
        for ($i = 0; $i < count($args); $i++) {
            $arg = $args[$i];
            if ($arg === '--help' || $arg === '-h') {
                return null;
            }
            if ($arg === '--') {
                $positional = array_merge($positional, array_slice($args, $i + 1));
                break;
            }
            if (strncmp($arg, '--', 2) !== 0) {
                $positional[] = $arg;
                continue;
            }
            $eq = strpos($arg, '=');
            $name = $eq === false ? $arg : substr($arg, 0, $eq);
            if ($name !== '--trusted-root' && !array_key_exists($name, $single)) {
                throw new UsageError('unknown option ' . $name);
            }
            if ($eq !== false) {
                $value = substr($arg, $eq + 1);
            } elseif ($i + 1 < count($args)) {
                $value = $args[++$i];
            } else {
                throw new UsageError($name . ' needs a value');
            }
            if ($name === '--trusted-root') {
                $roots[] = $value;
            } elseif ($single[$name] !== null) {
                throw new UsageError($name . ' given twice');
            } else {
                $single[$name] = $value;
            }
        }
        if ($roots === []) {
            throw new UsageError('at least one --trusted-root is needed');
        }
        if ($single['--install-id'] === null || $single['--install-id'] === '') {
            throw new UsageError('--install-id is needed');
        }
        if (count($positional) < 1 || count($positional) > 2) {
            throw new UsageError('give COMMAND.json and optionally BUNDLE.json');
        }
        return [
            'roots' => $roots,
            'install_id' => $single['--install-id'],
            'state_dir' => $single['--state-dir'],
            'now' => $single['--now'],
            'command' => $positional[0],
            'bundle' => $positional[1] ?? null,
        ];
    }

    private static function clock(?string $now): Clock
    {
        if ($now === null) {
            return new SystemClock();
        }
        try {
            return FixedClock::at($now);
        } catch (InvalidTimestamp $e) {
            throw new UsageError('--now must be an RFC 3339 UTC time');
        }
    }

    private static function read(string $path): string
    {
        $bytes = ErrorTrap::call(
            static fn () => file_get_contents($path),
            static fn (string $w): UsageError => new UsageError('cannot read ' . $path . ': ' . $w)
        );
        if (!is_string($bytes)) {
            throw new UsageError('cannot read ' . $path);
        }
        return $bytes;
    }

    /** Removes the throwaway journal directory this run made (and only that). */
    private static function remove(string $dir): void
    {
        foreach (['journal.json', 'journal.lock', 'tick.lock'] as $file) {
            if (is_file($dir . '/' . $file)) {
                unlink($dir . '/' . $file);
            }
        }
        if (is_dir($dir)) {
            rmdir($dir);
        }
    }
}
