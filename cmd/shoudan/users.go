package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/shoudan/shoudan/switch/backoffice"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/spf13/cobra"
)

// printDemoUsers prints the demo users created at this start, once: their passwords are not
// kept anywhere in clear.
func printDemoUsers(w io.Writer, us []backoffice.NewUser) {
	if len(us) == 0 {
		return
	}
	fmt.Fprintln(w, "console demo users (shown once; change them with the console's change-password page or `shoudan users passwd`):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, u := range us {
		scope := "all merchants"
		if u.MID != "" {
			scope = "merchant " + u.MID
		}
		if len(u.TIDs) > 0 {
			scope += ", terminal " + strings.Join(u.TIDs, ",")
		}
		if u.Operator != "" {
			scope += ", operator " + u.Operator
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", u.Login, u.Password, u.Role, scope)
	}
	tw.Flush()
}

// readPassword takes a password from --password, or one line of standard input (so that it
// need not appear in the shell history: `shoudan users add … < file`).
func readPassword(flag string, in io.Reader) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if f, ok := in.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(os.Stderr, "password: ")
		}
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("password: expected --password or a line on standard input")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func usersCmd(cfgPath *string) *cobra.Command {
	c := &cobra.Command{Use: "users", Short: "Console users: add, list, disable, enable, passwd"}
	var n backoffice.NewUser
	var role, tids, pw string
	add := &cobra.Command{
		Use:   "add LOGIN",
		Short: "Add a console user (password from --password or standard input)",
		Long: `Add a console user. Roles: acquirer_admin and acquirer_ops (all merchants, no --mid),
merchant_admin and refund_reviewer (--mid), merchant_operator (--mid, optionally --tids and --operator).
Passwords: 6 to 20 characters with letters and digits.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n.Login, n.Role, n.CreatedBy = args[0], backoffice.Role(role), "cli"
			if tids != "" {
				n.TIDs = strings.Split(tids, ",")
			}
			var err error
			if n.Password, err = readPassword(pw, cmd.InOrStdin()); err != nil {
				return err
			}
			return withJournal(cmd.Context(), *cfgPath, func(j *journal.Journal) error {
				s := backoffice.NewStore(j.Pool)
				u, err := s.AddUser(cmd.Context(), n)
				if err != nil {
					return err
				}
				_ = s.Audit(cmd.Context(), u, "", backoffice.ActUserAdd, "from the command line: role "+string(u.Role), "cli", true)
				fmt.Fprintf(cmd.OutOrStdout(), "added %s (%s)\n", u.Login, u.Role)
				return nil
			})
		},
	}
	add.Flags().StringVar(&role, "role", "", "acquirer_admin, acquirer_ops, merchant_admin, merchant_operator or refund_reviewer")
	add.Flags().StringVar(&n.MID, "mid", "", "the merchant of a merchant user")
	add.Flags().StringVar(&n.Name, "name", "", "display name")
	add.Flags().StringVar(&tids, "tids", "", "merchant operator: assigned terminals, comma-separated (default all of the merchant's)")
	add.Flags().StringVar(&n.Operator, "operator", "", "merchant operator: operator code F63.1 (default any)")
	add.Flags().StringVar(&pw, "password", "", "password (default: read a line from standard input)")
	_ = add.MarkFlagRequired("role")

	list := &cobra.Command{
		Use:   "list",
		Short: "List console users",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withJournal(cmd.Context(), *cfgPath, func(j *journal.Journal) error {
				us, err := backoffice.NewStore(j.Pool).Users(cmd.Context(), "")
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "login\trole\tmid\ttids\toperator\tstatus\tname")
				for _, u := range us {
					st := "enabled"
					if u.Disabled {
						st = "disabled"
					} else if u.Failed > 0 {
						st = fmt.Sprintf("%d failed logins", u.Failed)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", u.Login, u.Role, u.MID, strings.Join(u.TIDs, ","), u.Operator, st, u.Name)
				}
				return tw.Flush()
			})
		},
	}
	setDisabled := func(use string, disabled bool) *cobra.Command {
		return &cobra.Command{
			Use:   use + " LOGIN",
			Short: strings.ToUpper(use[:1]) + use[1:] + " a console user (enabling also lifts a lockout)",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return withJournal(cmd.Context(), *cfgPath, func(j *journal.Journal) error {
					s := backoffice.NewStore(j.Pool)
					u, err := s.UserByLogin(cmd.Context(), args[0])
					if err != nil {
						return fmt.Errorf("%s: %w", args[0], err)
					}
					if err := s.SetDisabled(cmd.Context(), u.ID, disabled); err != nil {
						return err
					}
					act := backoffice.ActUserEnable
					if disabled {
						act = backoffice.ActUserDisable
					}
					_ = s.Audit(cmd.Context(), nil, "cli", act, u.Login, "cli", true)
					fmt.Fprintf(cmd.OutOrStdout(), "%sd %s\n", use, u.Login)
					return nil
				})
			},
		}
	}
	var newPW string
	passwd := &cobra.Command{
		Use:   "passwd LOGIN",
		Short: "Set a console user's password (from --password or standard input); ends their sessions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := readPassword(newPW, cmd.InOrStdin())
			if err != nil {
				return err
			}
			return withJournal(cmd.Context(), *cfgPath, func(j *journal.Journal) error {
				s := backoffice.NewStore(j.Pool)
				u, err := s.UserByLogin(cmd.Context(), args[0])
				if err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				if err := s.SetPassword(cmd.Context(), u.ID, u.Login, p, nil); err != nil {
					return err
				}
				_ = s.Audit(cmd.Context(), nil, "cli", backoffice.ActPasswordChange, "reset for "+u.Login, "cli", true)
				fmt.Fprintf(cmd.OutOrStdout(), "password set for %s\n", u.Login)
				return nil
			})
		},
	}
	passwd.Flags().StringVar(&newPW, "password", "", "the new password (default: read a line from standard input)")
	c.AddCommand(add, list, setDisabled("disable", true), setDisabled("enable", false), passwd)
	return c
}
